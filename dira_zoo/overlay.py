"""Heat-map overlays as plain RGB arrays and PNG files (what the CLI writes and the demo shows).

The colour map is blended with a per-pixel opacity proportional to the heat, so cold regions show
the untouched radiograph and only the evidence is coloured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DiraZooError

if TYPE_CHECKING:
    from .localize import ImageLocalization

#: Box colours (RGB), one per finding in turn.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 255, 0), (255, 128, 0),
)  # fmt: skip


def render_overlay(
    grey: np.ndarray,
    heatmap: np.ndarray | None,
    boxes: Sequence[Sequence[float]] = (),
    labels: Sequence[str] = (),
    *,
    alpha: float = 0.5,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """A grey [0, 1] image with a [0, 1] heat map (same size) and labelled boxes → uint8 H×W×3 RGB.

    ``boxes`` are ``(x0, y0, x1, y1[, score])`` in the image's pixels; ``labels`` go with them in order.
    """
    import cv2

    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2:
        raise ValueError(f"expected a grey H×W image, got shape {grey.shape}")
    base = np.repeat((np.clip(grey, 0, 1) * 255.0)[..., None], 3, axis=2)
    if heatmap is not None:
        heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
        if heat.shape != grey.shape:
            raise ValueError(f"heat map {heat.shape} does not match the image {grey.shape}")
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        weight = (alpha * heat)[..., None]
        base = base * (1.0 - weight) + colour.astype(np.float32) * weight
    rgb = np.ascontiguousarray(np.clip(np.rint(base), 0, 255).astype(np.uint8))
    scale = min(grey.shape) / 512.0
    thickness = max(1, round(2 * scale))
    font = max(0.35, 0.5 * scale)
    palette = colors or PALETTE
    for k, box in enumerate(boxes):
        color = palette[k % len(palette)]
        x0, y0, x1, y1 = (round(float(v)) for v in box[:4])
        cv2.rectangle(rgb, (x0, y0), (max(x1 - 1, x0), max(y1 - 1, y0)), color, thickness, cv2.LINE_8)
        if k < len(labels) and labels[k]:
            _label(rgb, labels[k], (x0, y0), color, font, thickness)
    return rgb


def render_result(result: ImageLocalization, *, alpha: float = 0.5) -> np.ndarray:
    """One overlay for a localized image: the strongest heat of its findings and every box, labelled.

    Boxes of one finding share a colour; each label reads ``name probability``.
    """
    heat = None
    for finding in result.findings:
        heat = finding.heatmap if heat is None else np.maximum(heat, finding.heatmap)
    boxes, labels, colors = [], [], []
    for k, finding in enumerate(result.findings):
        for box in finding.boxes:
            boxes.append(box)
            labels.append(f"{finding.name} {finding.probability:.2f}")
            colors.append(PALETTE[k % len(PALETTE)])
    return render_overlay(result.image.pixels, heat, boxes, labels, alpha=alpha, colors=colors)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 array as PNG (any path, unicode included); a user error if it cannot."""
    import cv2

    path = Path(path)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:  # pragma: no cover - imencode fails only on invalid arrays
        raise ValueError(f"cannot encode an array of shape {rgb.shape} as PNG")
    try:
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise DiraZooError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def _label(
    rgb: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], font: float, thick: int
) -> None:
    """Text on a dark strip just above the box (inside it when the box touches the top edge)."""
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, max(1, thick - 1))
    x, y = corner
    top = y - th - base - 2 if y - th - base - 2 >= 0 else y
    x = min(max(x, 0), max(rgb.shape[1] - tw - 2, 0))
    cv2.rectangle(rgb, (x, top), (x + tw + 2, top + th + base + 2), (0, 0, 0), -1)
    cv2.putText(
        rgb,
        text,
        (x + 1, top + th + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        font,
        color,
        max(1, thick - 1),
        cv2.LINE_AA,
    )
