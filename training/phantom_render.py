"""Drawing one chest-radiograph phantom: anatomy, findings at known places, acquisition effects.

The image is built as a projected *density* (more tissue → brighter), the way a radiograph forms.
Smooth structures (body, lungs, heart, mediastinum, fluid, air) are drawn at a quarter of the
resolution, where they are cheap; thin ones (ribs, clavicles, vessels, the pleural line, nodules) at
full resolution with anti-aliased OpenCV primitives. Every shape is defined in *anatomical*
coordinates (u, v in [0, 1]; the patient's right is on the image's left) and mapped through the
image's pose (rotation, scale, shift), so boxes and masks come out in the image's own pixels and the
image is never resampled.

Randomness comes from two generators: the patient's (anatomy, shared by follow-up images) and the
image's (pose, exposure, noise, findings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: The findings a phantom can carry, named as in ChestX-ray14.
FINDINGS: tuple[str, ...] = ("Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax")

#: Cardiothoracic ratio ranges: a normal heart, and an enlarged one (labelled Cardiomegaly). They meet
#: at the clinical threshold of 0.5, so borderline hearts are hard to call, as in real films.
NORMAL_CTR = (0.36, 0.5)
ENLARGED_CTR = (0.5, 0.62)

_LOWRES = 4  # smooth fields are drawn at size / _LOWRES
_SHIFT = 4  # fractional bits of OpenCV drawing coordinates (sub-pixel vertices)


@dataclass(frozen=True)
class FindingBox:
    """One finding: its ChestX-ray14 label and box ``(x, y, w, h)`` in image pixels (top-left corner)."""

    label: str
    box: tuple[float, float, float, float]


@dataclass
class Phantom:
    """A rendered phantom: 8-bit grey pixels, its findings and, when asked for, masks."""

    pixels: np.ndarray  # uint8 H×W
    findings: list[FindingBox]
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # label -> bool H×W
    lungs: np.ndarray | None = None  # bool H×W


@dataclass(frozen=True)
class Anatomy:
    """A patient's build, in anatomical coordinates (fractions of the image side from the midline/top)."""

    body_half_width: float
    shoulder_v: float
    apex_u: float
    apex_v: float
    lung_half_width: float  # midline to the lateral lung edge: half the thoracic width
    costophrenic_v: float
    dome_v: float  # top of the right hemidiaphragm (image left); the left one sits lower
    left_dome_drop: float
    mediastinum_u: float  # midline to the medial lung edge
    heart_ctr: float  # cardiothoracic ratio when the heart is normal
    heart_tilt: float  # radians
    heart_aspect: float
    rib_top: float
    rib_spacing: float
    rib_width: float
    tissue: float  # soft-tissue thickness (habitus)
    female: bool

    @classmethod
    def sample(cls, rng: np.random.Generator, female: bool) -> Anatomy:
        lung_half_width = rng.uniform(0.34, 0.4)
        return cls(
            body_half_width=lung_half_width + rng.uniform(0.05, 0.1),
            shoulder_v=rng.uniform(0.06, 0.11),
            apex_u=rng.uniform(0.15, 0.19),
            apex_v=rng.uniform(0.09, 0.13),
            lung_half_width=lung_half_width,
            costophrenic_v=rng.uniform(0.74, 0.82),
            dome_v=rng.uniform(0.61, 0.68),
            left_dome_drop=rng.uniform(0.0, 0.04),
            mediastinum_u=rng.uniform(0.06, 0.08),
            heart_ctr=rng.uniform(*NORMAL_CTR),
            heart_tilt=math.radians(rng.uniform(25, 40)),
            heart_aspect=rng.uniform(0.62, 0.75),
            rib_top=rng.uniform(0.09, 0.12),
            rib_spacing=rng.uniform(0.056, 0.066),
            rib_width=rng.uniform(0.016, 0.022),
            tissue=rng.uniform(0.85, 1.2),
            female=female,
        )

    def base_v(self, side: int) -> tuple[float, float]:
        """(dome top, costophrenic angle) heights of one hemidiaphragm."""
        drop = self.left_dome_drop if side > 0 else 0.0
        return self.dome_v + drop, self.costophrenic_v + drop


@dataclass(frozen=True)
class Exposure:
    """Acquisition: attenuation gain, window, gamma and quantum noise."""

    gain: float
    low: float
    high: float
    gamma: float
    noise: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Exposure:
        return cls(
            gain=rng.uniform(0.9, 1.3),
            low=rng.uniform(0.0, 0.05),
            high=rng.uniform(0.88, 1.0),
            gamma=rng.uniform(0.8, 1.25),
            noise=rng.uniform(0.01, 0.03),
        )


class Pose:
    """Patient positioning: maps anatomical (u, v) to pixels, and pixel grids back."""

    def __init__(self, angle_deg: float, scale: float, shift: tuple[float, float]) -> None:
        a = math.radians(angle_deg)
        self.matrix = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        self.offset = np.array([0.5 + shift[0], 0.5 + shift[1]])
        self.inverse = np.linalg.inv(self.matrix).astype(np.float32)
        self.scale = scale

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Pose:
        return cls(rng.uniform(-4, 4), rng.uniform(0.93, 1.05), tuple(rng.uniform(-0.03, 0.03, 2)))

    def to_pixels(self, uv: np.ndarray, side: int) -> np.ndarray:
        """(..., 2) anatomical points → OpenCV fixed-point int32 pixel vertices of a side×side image."""
        xy = ((np.asarray(uv) - 0.5) @ self.matrix.T + self.offset) * (side << _SHIFT)
        return np.round(xy).astype(np.int32)

    def grid(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Anatomical coordinates (u, v) of every pixel centre of a side×side image."""
        c = (np.arange(side, dtype=np.float32) + 0.5) / side
        x, y = np.meshgrid(c - np.float32(self.offset[0]), c - np.float32(self.offset[1]))
        m = self.inverse
        return m[0, 0] * x + m[0, 1] * y + 0.5, m[1, 0] * x + m[1, 1] * y + 0.5


class _Canvas:
    """One image while it is drawn: smooth density at a quarter of the size, the rest at half.

    Only the finished image is brought to full size (with fresh full-resolution noise): drawing at
    half size costs a quarter and, after upsampling, looks like a radiograph's soft edges.
    """

    def __init__(self, anatomy: Anatomy, pose: Pose, size: int) -> None:
        self.a, self.pose, self.size = anatomy, pose, size
        self.low, self.mid = min(size, max(64, size // _LOWRES)), min(size, max(128, size // 2))
        self.u, self.v = pose.grid(self.low)
        self.detail = np.zeros((self.mid, self.mid), np.float32)  # bones, lesions, the pleural line
        self.vessels = np.zeros((self.mid, self.mid), np.float32)  # later masked by the aerated lung

    def fill_low(self, outline: np.ndarray, soften: float = 0.7) -> np.ndarray:
        """A filled anatomical outline as a soft low-resolution mask in [0, 1]."""
        mask = np.zeros((self.low, self.low), np.uint8)
        cv2.fillPoly(mask, [self.pose.to_pixels(outline, self.low)], 255, cv2.LINE_AA, _SHIFT)
        return _blur(mask.astype(np.float32) * (1 / 255), soften)

    def resize(self, image: np.ndarray, side: int) -> np.ndarray:
        return cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)

    def width_px(self, fraction: float, side: int) -> int:
        return max(1, round(fraction * side * self.pose.scale))

    def polylines(self, layer: np.ndarray, lines: np.ndarray, value: float, width: float) -> None:
        """Draw (n, points, 2) anatomical polylines on ``layer``; ``width`` is a fraction of the side."""
        side = layer.shape[0]
        pts = list(self.pose.to_pixels(lines, side))
        cv2.polylines(layer, pts, False, float(value), self.width_px(width, side), cv2.LINE_AA, _SHIFT)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image


def _gauss(x: np.ndarray, power: int = 2) -> np.ndarray:
    """exp(-x**power) via OpenCV (several times faster than numpy's exp here)."""
    return cv2.exp(-(x**power))


def _lung_outline(a: Anatomy, side: int) -> np.ndarray:
    """One lung field (side -1: image left, the patient's right) as closed (u, v) outline points."""
    dome_v, cp_v = a.base_v(side)
    # lateral edge: from the rounded apex out and down to the costophrenic angle
    t = np.linspace(0.0, 1.0, 28)
    lat_u = a.apex_u + (a.lung_half_width - a.apex_u) * np.sin(np.pi / 2 * t) ** 0.75
    lat_v = a.apex_v + (cp_v - a.apex_v) * (1 - np.cos(np.pi / 2 * t))
    # hemidiaphragm: a dome from the costophrenic angle to the cardiophrenic corner
    s = np.linspace(0.0, 1.0, 18)[1:]
    top_u = a.mediastinum_u + 0.45 * (a.lung_half_width - a.mediastinum_u)
    dia_u = a.lung_half_width + (a.mediastinum_u + 0.01 - a.lung_half_width) * s
    lateral = np.clip((dia_u - top_u) / (a.lung_half_width - top_u), 0, None)
    medial = np.clip((top_u - dia_u) / (top_u - a.mediastinum_u), 0, None)
    dia_v = dome_v + (cp_v - dome_v) * lateral**1.6 + 0.04 * medial**2
    # medial edge: up along the mediastinum, rounding into the apex
    m = np.linspace(1.0, 0.0, 20)[1:-1]
    med_u = a.apex_u - (a.apex_u - a.mediastinum_u) * np.sin(np.pi / 2 * m) ** 0.5
    med_v = a.apex_v + (dia_v[-1] - a.apex_v) * (1 - np.cos(np.pi / 2 * m))
    u = np.concatenate([lat_u, dia_u, med_u])
    v = np.concatenate([lat_v, dia_v, med_v])
    return np.stack([0.5 + side * u, v], axis=-1)


def _heart_outline(a: Anatomy, ctr: float) -> np.ndarray:
    """The heart's silhouette: a tilted ellipse, cut at the left hemidiaphragm, ``ctr`` × thorax wide."""
    width = ctr * 2 * a.lung_half_width
    c, s = math.cos(a.heart_tilt), math.sin(a.heart_tilt)
    major = width / 2 / math.sqrt(c * c + (a.heart_aspect * s) ** 2)
    minor = major * a.heart_aspect
    half_height = math.sqrt((major * s) ** 2 + (minor * c) ** 2)
    floor = a.base_v(1)[0] + 0.035
    centre = np.array([0.5 + 0.15 * width, floor - 0.7 * half_height])
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    pts = np.stack([major * np.cos(t), minor * np.sin(t)], axis=-1) @ np.array([[c, s], [-s, c]]) + centre
    pts[:, 1] = np.minimum(pts[:, 1], floor)
    return pts


def _body_density(cv: _Canvas) -> np.ndarray:
    """Soft tissue (a cylinder-like thickness with neck, shoulders, arms, breasts) and the spine."""
    a, u, v = cv.a, cv.u, cv.v
    x = np.abs(u - 0.5)
    rise = np.clip(1.0 - v / a.shoulder_v, 0.0, 1.0)
    half_width = a.body_half_width - (a.body_half_width - 0.09) * np.sqrt(rise)
    trunk = np.sqrt(np.clip(1.0 - (x / half_width) ** 2, 0.0, None))
    arms = _gauss((x - a.body_half_width - 0.08) / 0.045) * np.clip((v - a.shoulder_v) / 0.1, 0.0, 1.0)
    humerus = _gauss(np.hypot((x - a.body_half_width - 0.02) / 0.06, (v - a.shoulder_v - 0.07) / 0.07))
    density = a.tissue * (1.2 * trunk + 0.2 * np.sqrt(trunk) + 0.5 * arms) + 0.5 * humerus + 0.2 * v
    if a.female:
        density += 0.25 * _gauss(np.hypot((x - 0.24) / 0.16, (v - 0.76) / 0.1), 4)
    spine = _gauss(x / 0.042, 6) * np.clip((v - 0.05) / 0.1, 0.0, 1.0)
    discs = 0.85 + 0.15 * np.cos(2 * np.pi * (v - a.rib_top) / (0.95 * a.rib_spacing))
    density += 0.35 * spine * discs
    # trachea and main bronchi: an air column down to the carina
    carina = 0.36
    xt = u - 0.5 - 0.5 * np.clip(v - carina, 0.0, None) * np.sign(u - 0.5)
    density -= 0.3 * _gauss(xt / 0.017, 4) * np.clip((carina + 0.07 - v) / 0.07, 0.0, 1.0)
    return density.astype(np.float32)


def _ribs(cv: _Canvas, rng: np.random.Generator) -> None:
    """Posterior ribs (arcs from the spine), fainter anterior ribs, clavicles; cortical edges brighter."""
    a = cv.a
    t = np.linspace(0.0, 1.0, 24)
    side = np.array([-1.0, 1.0])[:, None, None]  # (side, rib, point)
    k = np.arange(10.0)[None, :, None]
    v0 = a.rib_top + k * a.rib_spacing + rng.normal(0, 0.003, (2, 10, 1))
    u = 0.5 + side * (0.03 + (a.lung_half_width + 0.035) * t)
    v = v0 - 0.04 * np.sin(np.pi * 0.7 * t) + (0.13 + 0.01 * k) * t**2.5
    posterior = np.stack(np.broadcast_arrays(u, v), -1)
    # anterior ribs run from the lateral ends of the upper seven down towards the costal cartilage
    ends = posterior[:, :7, -1:]
    ua = ends[..., 0] + (0.5 + side * 0.13 - ends[..., 0]) * t
    va = ends[..., 1] - 0.01 + 0.11 * t**0.8 + 0.02 * np.sin(np.pi * t)
    anterior = np.stack([ua, va], -1)
    # clavicles: S-shaped bars from the sternal notch to the acromion
    uc = 0.5 + side[:, 0] * (0.03 + (a.body_half_width - 0.06) * t)
    vc = np.broadcast_to(a.shoulder_v + 0.1 - 0.075 * t - 0.012 * np.sin(2 * np.pi * t), uc.shape)
    clavicles = np.stack([uc, vc], -1)
    width = a.rib_width * (0.85 + 0.03 * k[..., 0])
    bones = [
        (posterior.reshape(-1, len(t), 2), 0.1, np.broadcast_to(width, (2, 10)).ravel()),
        (anterior.reshape(-1, len(t), 2), 0.05, 0.8 * np.broadcast_to(width[:, :7], (2, 7)).ravel()),
        (clavicles, 0.22, np.full(2, 0.026)),
    ]
    for lines, value, widths in bones:
        _draw(cv, cv.detail, lines, np.full(len(lines), value), widths)
        # the cortex: two brighter thin lines along each shaft
        half = np.stack([np.zeros_like(widths), widths / 2], -1)[:, None]
        edges = np.concatenate([lines - half, lines + half])
        cv.polylines(cv.detail, edges, 0.7 * value, 0.002)


def _draw(cv: _Canvas, layer: np.ndarray, lines: np.ndarray, values: np.ndarray, widths: np.ndarray) -> None:
    """Draw polylines of varying value and width with one OpenCV call per distinct (value, pixel width)."""
    side = layer.shape[0]
    pixels = np.maximum(1, np.round(widths * side * cv.pose.scale)).astype(int)
    levels = np.round(values * 40) / 40  # a fortieth of a density unit is invisible
    keys, group = np.unique(np.stack([levels, pixels], 1), axis=0, return_inverse=True)
    pts = cv.pose.to_pixels(lines, side)
    for i, (value, width) in enumerate(keys):
        cv2.polylines(
            layer, list(pts[group.ravel() == i]), False, float(value), int(width), cv2.LINE_AA, _SHIFT
        )


def _vessels(cv: _Canvas, rng: np.random.Generator) -> None:
    """Lung markings: branching random walks from each hilum, thinner and fainter each step outwards."""
    a, steps = cv.a, 9
    segments, generations = [], []
    for side in (-1, 1):
        hilum = np.array([0.5 + side * (a.mediastinum_u + 0.035), rng.uniform(0.38, 0.44)])
        n = int(rng.integers(12, 17))
        trunks, angles = _walks(rng, np.repeat(hilum[None], n, 0), rng.uniform(-1.7, 1.7, n), steps, side)
        m = int(rng.integers(n, 2 * n))
        parent, node = rng.integers(n, size=m), rng.integers(1, steps - 2, size=m)
        turn = rng.choice([-1, 1], m) * rng.uniform(0.3, 0.9, m)
        twigs, _ = _walks(rng, trunks[parent, node], angles[parent, node - 1] + turn, steps - 3, side)
        # a segment's generation counts steps from the hilum (twigs continue their parent's count)
        for walk, gen in (
            (trunks, np.arange(steps)[None].repeat(n, 0)),
            (twigs, node[:, None] + np.arange(steps - 3)),
        ):
            segments.append(np.stack([walk[:, :-1], walk[:, 1:]], 2).reshape(-1, 2, 2))
            generations.append(gen.ravel())
    g = np.concatenate(generations)
    _draw(cv, cv.vessels, np.concatenate(segments), 0.2 * 0.87**g, 0.012 * 0.82**g)


def _walks(rng: np.random.Generator, starts: np.ndarray, angles: np.ndarray, steps: int, side: int):
    """Random walks (n, steps + 1, 2) heading laterally (``side``) at ``angles``; also each step's angle."""
    heading = angles[:, None] + np.cumsum(rng.normal(0, 0.12, (len(starts), steps)), axis=1)
    length = rng.uniform(0.018, 0.03, (len(starts), steps))
    moves = np.stack([side * np.cos(heading), np.sin(heading)], -1) * length[..., None]
    return np.concatenate([starts[:, None], starts[:, None] + np.cumsum(moves, axis=1)], axis=1), heading


@dataclass(frozen=True)
class _Lesion:
    """A nodule or mass: a projected (lobulated) sphere, centre and radius in full-size pixels."""

    cx: float
    cy: float
    radius: float
    amplitude: float
    lobes: tuple[tuple[int, float, float], ...]  # (order, relative amplitude, phase)

    def outline(self, theta: np.ndarray) -> np.ndarray:
        return self.radius * (1 + sum(a * np.cos(k * theta + phase) for k, a, phase in self.lobes))

    def profile(self, side: int, size: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Thickness in [0, 1] on the patch of a side×side grid that covers it, and the patch origin."""
        scale = side / size
        cx, cy = self.cx * scale, self.cy * scale
        reach = self.radius * scale * (1 + sum(a for _, a, _ in self.lobes)) + 1
        x0, y0 = max(0, int(cx - reach)), max(0, int(cy - reach))
        x1, y1 = min(side, int(cx + reach) + 2), min(side, int(cy + reach) + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
        r = self.outline(np.arctan2(dy, dx)) * scale
        return np.sqrt(np.clip(1.0 - (dx * dx + dy * dy) / (r * r), 0.0, None)), (x0, y0)

    def box(self) -> tuple[float, float, float, float]:
        theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
        r = self.outline(theta)
        xs, ys = self.cx + r * np.cos(theta), self.cy + r * np.sin(theta)
        return float(xs.min()), float(ys.min()), float(np.ptp(xs)), float(np.ptp(ys))

    def mask(self, size: int) -> np.ndarray:
        patch, (x0, y0) = self.profile(size, size)
        full = np.zeros((size, size), bool)
        full[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch > 0
        return full


def _lesion(cv: _Canvas, rng: np.random.Generator, allowed: np.ndarray, label: str) -> _Lesion:
    """A nodule (small, round, 1-3 % of the width) or a mass (large, lobulated) inside the aerated lung."""
    if label == "Nodule":  # at least 1.5 pixels across even in tiny images
        radius, amp, lobes = max(1.5, rng.uniform(0.005, 0.015) * cv.size), rng.uniform(0.1, 0.3), 0.0
    else:
        radius, amp, lobes = rng.uniform(0.03, 0.06) * cv.size, rng.uniform(0.15, 0.4), 0.13
    inner = cv2.erode((allowed > 0.9).astype(np.uint8), None, iterations=max(1, round(radius / _LOWRES)))
    ys, xs = np.nonzero(inner if inner.any() else allowed > 0.5)
    i = rng.integers(len(xs))
    cx, cy = (xs[i] + rng.random()) * cv.size / cv.low, (ys[i] + rng.random()) * cv.size / cv.low
    shape = tuple((k, lobes * rng.uniform(0.3, 1.0), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    lesion = _Lesion(cx, cy, radius, amp, shape if lobes else ())
    patch, (x0, y0) = lesion.profile(cv.mid, cv.size)
    cv.detail[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] += amp * patch
    return lesion


def _effusion(cv: _Canvas, rng: np.random.Generator, side: int, lung: np.ndarray) -> np.ndarray:
    """Fluid layering in the costophrenic recess: a basal opacity whose meniscus rises laterally."""
    a = cv.a
    x = side * (cv.u - 0.5)
    cp = a.base_v(side)[1]
    height = rng.uniform(0.05, 0.22)
    f = np.clip((x - a.mediastinum_u) / (a.lung_half_width - a.mediastinum_u), 0.0, 1.0)
    meniscus = cp - height * (0.25 + 0.75 * f**1.5)
    fade = 1.0 / (1.0 + cv2.exp(-(cv.v - meniscus) / 0.012))
    return (fade * (lung > 0.5)).astype(np.float32)


def _pneumothorax(cv: _Canvas, rng: np.random.Generator, side: int, lung: np.ndarray) -> np.ndarray:
    """Pleural air: a rim between chest wall and collapsed lung along the apex and lateral wall, tapering."""
    a = cv.a
    x = side * (cv.u - 0.5)
    inside = (lung > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3) / (cv.low * cv.pose.scale)
    bottom = a.apex_v + (a.base_v(side)[1] - a.apex_v) * rng.uniform(0.35, 0.75)
    taper = np.sqrt(np.clip((bottom - cv.v) / (bottom - a.apex_v), 0.0, 1.0))
    rim = (dist < rng.uniform(0.02, 0.06) * taper) & (x > a.apex_u - 0.05) & (inside > 0)
    return _blur(rim.astype(np.float32), 0.6)


def _box(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> tuple[float, float, float, float] | None:
    """Bounding box ``(x, y, w, h)`` of a boolean mask whose top-left pixel sits at ``origin``."""
    points = cv2.findNonZero(mask.astype(np.uint8))
    if points is None:
        return None
    x, y, w, h = cv2.boundingRect(points)
    return float(x + origin[0]), float(y + origin[1]), float(w), float(h)


def render(
    anatomy: Anatomy,
    rng: np.random.Generator,
    size: int,
    labels: tuple[str, ...],
    *,
    with_masks: bool = False,
) -> Phantom:
    """Draw one image of a patient showing ``labels`` (any subset of :data:`FINDINGS`).

    Each finding draws from its own stream spawned from ``rng``, so the same ``rng`` seed with and
    without a finding gives the same image apart from the finding (and what it displaces).
    """
    unknown = set(labels) - set(FINDINGS)
    if unknown:
        raise ValueError(f"phantoms cannot show {sorted(unknown)}; known findings: {', '.join(FINDINGS)}")
    rng, *streams = rng.spawn(1 + len(FINDINGS))
    frng = dict(zip(FINDINGS, streams, strict=True))
    a = anatomy
    cv = _Canvas(a, Pose.sample(rng), size)
    exposure = Exposure.sample(rng)
    regions: dict[str, np.ndarray] = {}  # low-resolution finding regions

    lungs = {side: cv.fill_low(_lung_outline(a, side)) for side in (-1, 1)}
    enlarged = "Cardiomegaly" in labels
    heart = cv.fill_low(
        _heart_outline(a, frng["Cardiomegaly"].uniform(*ENLARGED_CTR) if enlarged else a.heart_ctr)
    )
    if enlarged:
        regions["Cardiomegaly"] = heart
    knob = _gauss(np.hypot(cv.u - 0.5 - a.mediastinum_u, cv.v - 0.3) / 0.035)  # the aortic knob
    air = {side: lung * (1 - heart) * (1 - knob) for side, lung in lungs.items()}
    density = _body_density(cv)
    if "Effusion" in labels:
        r = frng["Effusion"]
        side = int(r.choice([-1, 1]))
        regions["Effusion"] = _effusion(cv, r, side, air[side])
        air[side] = air[side] * (1 - r.uniform(0.6, 0.95) * regions["Effusion"])
    rim = np.zeros_like(heart)
    if "Pneumothorax" in labels:
        r = frng["Pneumothorax"]
        side = int(r.choice([-1, 1]))
        rim = regions["Pneumothorax"] = _pneumothorax(cv, r, side, air[side])
        density -= r.uniform(0.2, 0.4) * rim  # pleural air: darker than lung, and without markings
    aerated = air[-1] + air[1]
    depth = cv2.distanceTransform((aerated > 0.5).astype(np.uint8), cv2.DIST_L2, 3) / (0.06 * cv.low)
    texture = _blur(rng.standard_normal(aerated.shape, dtype=np.float32), 1.0)
    zones = 1.0 - 0.3 * np.clip((0.32 - cv.v) / 0.2, 0.0, 1.0)  # apices lie under shoulder muscle
    density -= aerated * zones * (0.7 + 0.35 * np.sqrt(np.clip(depth, 0, 1)) + 0.06 * texture)
    if rng.random() < 0.7:  # gastric bubble under the left hemidiaphragm
        bubble_v = a.base_v(1)[0] + rng.uniform(0.05, 0.09)
        density -= 0.45 * _gauss(np.hypot((cv.u - 0.7) / 0.05, (cv.v - bubble_v) / 0.028))

    _ribs(cv, rng)
    _vessels(cv, rng)
    allowed = aerated * (1 - rim) * (1 - regions.get("Effusion", 0))
    lesions = {f: _lesion(cv, frng[f], allowed, f) for f in ("Nodule", "Mass") if f in labels}
    marked = cv.resize(np.clip(aerated - 1.5 * rim, 0.0, 1.0), cv.mid)  # where lung markings show
    if "Pneumothorax" in labels:  # the visceral pleural line at the collapsed lung's edge
        collapsed = (cv.resize(rim, cv.mid) > 0.5).astype(np.uint8)
        line = (cv2.dilate(collapsed, None) > collapsed) & (marked > 0.5)
        cv.detail += frng["Pneumothorax"].uniform(0.12, 0.25) * line
    total = cv.resize(density, cv.mid) + cv.detail + _blur(cv.vessels, 0.7) * marked
    pixels = _expose(total, size, exposure, rng)

    findings, masks = [], {}
    for label in sorted(labels):
        if label in lesions:
            box = lesions[label].box()
            full = lesions[label].mask(size) if with_masks else None
        else:
            full = cv.resize(regions[label], size) > 0.5
            box = _box(full)
        if box is not None:
            findings.append(FindingBox(label, tuple(round(c, 1) for c in box)))
            if with_masks:
                masks[label] = full
    lung_mask = cv.resize(lungs[-1] + lungs[1], size) > 0.5 if with_masks else None
    return Phantom(pixels, findings, masks, lung_mask)


def _expose(density: np.ndarray, size: int, e: Exposure, rng: np.random.Generator) -> np.ndarray:
    """Density → 8-bit radiograph of ``size``²: attenuation, window, gamma, then signal-dependent noise.

    The tone curve runs at drawing resolution; only upsampling and noise run at full size, where the
    noise is a randomly placed window of a fixed bank of normal deviates (drawing fresh ones costs
    more than the rest of the full-size work together).
    """
    x = 1.0 - cv2.exp(-e.gain * np.maximum(density, 0.0))
    x = cv2.pow(np.clip(x * (1.0 / (1.0 - math.exp(-e.gain * 2.0))), 1e-6, 1.0), e.gamma)
    x = e.low + (e.high - e.low) * x
    sigma = cv2.resize(e.noise * 255.0 * cv2.sqrt(x + 0.02), (size, size), interpolation=cv2.INTER_LINEAR)
    out = cv2.resize(x * 255.0, (size, size), interpolation=cv2.INTER_LINEAR)
    cv2.accumulateProduct(_noise_window(size, rng), sigma, out)
    return cv2.convertScaleAbs(out)  # |x| only matters for the rare negative noise in pure black


_NOISE_BANKS: dict[int, np.ndarray] = {}


def _noise_window(size: int, rng: np.random.Generator) -> np.ndarray:
    """A size×size window, at a random offset, of a fixed bank of standard normal deviates (a view)."""
    side = 2 * size
    bank = _NOISE_BANKS.get(side)
    if bank is None:
        bank = _NOISE_BANKS[side] = np.random.default_rng(12345).standard_normal((side, side), np.float32)
    y, x = rng.integers(0, side - size + 1, 2)
    return bank[y : y + size, x : x + size]
