"""Weakly-supervised lesion localization: class activation maps, boxes, and the one result record.

How a call works, and why it is fast:

1. Images (paths, :class:`~dira_zoo.io.XrayImage` or arrays) are preprocessed with the model's own
   transforms and run through the *trunk* (``forward_features``, i.e. up to ``layer4``) once, without
   autograd, with BatchNorm folded into the convolutions, optionally in bf16 autocast.
2. pytorch-grad-cam then explains a small *head* module — ``Identity`` (the target layer) → the
   model's ``forward_head`` — fed the trunk's output as an fp32 tensor that requires grad. The
   backward pass covers only pooling and the classifier, yet the target-layer activations and
   gradients are exactly those of the full model, so the maps equal the library's default use
   (tests check it). fp32 at the target layer is also what lets a bf16 trunk work at all: the library
   cannot turn bf16 activations into numpy.
3. One CAM target per (image, finding): the library pairs targets with batch rows (``zip``), so a
   single target for a batch would explain image 0 only. Rows are repeated per finding instead.

ScoreCAM (which masks the *input image*) and an explicit ``target_layer`` use the library on the
whole model, in fp32: exact, but with the library's speed.

Hooks live on a per-call head and are released in ``finally`` (not the library's context manager,
whose ``__exit__`` swallows ``IndexError``). The CAM section holds a lock, because the library
zeroes and fills ``.grad`` of the classifier, which would race between threads.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .errors import DiraZooError
from .hub import label_names_for, preprocess_for
from .io import XrayImage, as_xray
from .transforms import Preprocess

#: Method names → pytorch-grad-cam class names.
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "eigencam": "EigenCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}
#: Methods that perturb the input image and therefore need the whole model.
_FULL_MODEL_METHODS = frozenset({"scorecam"})
PRECISIONS = ("fp32", "bf16")

_CAM_LOCK = threading.Lock()

ImageInput = XrayImage | np.ndarray | str | Path


class Box(NamedTuple):
    """A box in original-image pixels (``x1``/``y1`` exclusive) and the peak heat inside it."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 2 if k != "score" else 4) for k, v in self._asdict().items()}


@dataclass(frozen=True)
class FindingResult:
    """One finding on one image: probability, maps and boxes."""

    name: str
    index: int
    probability: float
    cam: np.ndarray  # float32 in [0, 1] over the model input (feature or input resolution)
    raw: np.ndarray  # float32 ≥ 0, unnormalised CAM at feature resolution
    boxes: tuple[Box, ...]
    original_size: tuple[int, int]
    crop_box: tuple[float, float, float, float]  # the original-image region the model input covers

    @property
    def heatmap(self) -> np.ndarray:
        """The normalised map at the original resolution (zero outside the region the model saw).

        Computed on demand: fourteen full-resolution maps per radiograph would cost hundreds of MB.
        """
        return _paste(self.cam, self.original_size, self.crop_box)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "probability": round(self.probability, 6),
            "boxes": [b.as_dict() for b in self.boxes],
        }


@dataclass(frozen=True)
class ImageLocalization:
    """Everything :func:`localize` found on one image."""

    image: XrayImage
    method: str
    threshold: float
    probabilities: dict[str, float]  # every label of the model
    findings: tuple[FindingResult, ...]  # the explained ones, in the order asked (or by probability)

    @property
    def path(self) -> str | None:
        return self.image.path

    @property
    def original_size(self) -> tuple[int, int]:
        return self.image.original_size


def localize(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput],
    findings: Sequence[str] | None = None,
    *,
    top_k: int | None = None,
    method: str = "gradcam",
    threshold: float = 0.5,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    target_layer: nn.Module | None = None,
    progress: bool = False,
) -> list[ImageLocalization]:
    """Probabilities (sigmoid, multi-label), CAMs and boxes per image and finding.

    ``findings`` names labels to explain (default: all); ``top_k`` keeps the k most probable of them
    per image. ``threshold`` cuts the normalised map into boxes. ``device`` moves the model there
    (default: where it is). ``precision="bf16"`` runs the trunk under bf16 autocast; the CAM head
    stays fp32. A model whose weights are ``channels_last`` gets ``channels_last`` input.
    """
    if method not in METHODS:
        raise DiraZooError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
    if precision not in PRECISIONS:
        raise DiraZooError(f"unknown precision {precision!r}; choose fp32 or bf16")
    if not 0.0 < threshold < 1.0:
        raise DiraZooError(f"threshold must be between 0 and 1, got {threshold}")
    if top_k is not None and top_k < 1:
        raise DiraZooError(f"top_k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise DiraZooError(f"batch_size must be at least 1, got {batch_size}")
    labels = label_names_for(model)
    if not labels:
        raise DiraZooError(f"{type(model).__name__} has no classifier (num_classes=0): nothing to localize")
    wanted = _finding_indices(findings, labels)
    preprocess = preprocess_for(model)
    if device is not None:
        model.to(device)
    model.eval()
    dev = _model_device(model)
    full_model = target_layer is not None or method in _FULL_MODEL_METHODS
    if not full_model and not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise DiraZooError(
            f"{type(model).__name__} has no forward_features/forward_head (timm models have them); "
            "pass target_layer"
        )
    items = [images] if isinstance(images, (str, Path, XrayImage, np.ndarray)) else list(images)
    chunks = _chunks(items, batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, total=-(-len(items) // batch_size), desc="localize", unit="batch")
    results: list[ImageLocalization] = []
    for chunk in chunks:
        xrays = [as_xray(item) for item in chunk]
        x = preprocess.batch([xr.pixels for xr in xrays]).to(dev)
        if _is_channels_last(model):
            x = x.contiguous(memory_format=torch.channels_last)
        features, logits = _trunk(model, x, precision, full_model)
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        pairs = [(i, c) for i in range(len(xrays)) for c in _select(probs[i], wanted, top_k)]
        if full_model:
            layer = target_layer if target_layer is not None else _last_feature_layer(model)
            cams, raws = _run_cam(method, model, layer, x[[i for i, _ in pairs]], pairs)
        else:
            head = _CamHead(model)
            leaves = features[[i for i, _ in pairs]].requires_grad_(True)
            cams, raws = _run_cam(method, head, head.target, leaves, pairs)
        results.extend(_assemble(xrays, probs, pairs, cams, raws, labels, preprocess, method, threshold))
    return results


def localization_record(result: ImageLocalization, *, model_name: str) -> dict[str, Any]:
    """The JSON record of one image: what ``dira-localize`` writes and the demo offers for download."""
    height, width = result.original_size
    return {
        "model": model_name,
        "method": result.method,
        "threshold": result.threshold,
        "image": {"path": result.path, "width": width, "height": height},
        "findings": [f.to_dict() for f in result.findings],
        "probabilities": {k: round(v, 6) for k, v in result.probabilities.items()},
        "versions": versions(),
    }


@functools.cache
def versions() -> dict[str, str]:
    """Versions of the code that produced a result (they change what a map looks like)."""
    from importlib.metadata import PackageNotFoundError, version

    import timm

    from . import __version__

    try:
        grad_cam = version("grad-cam")
    except PackageNotFoundError:  # pragma: no cover - installed from source
        grad_cam = "unknown"
    return {
        "dira_zoo": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "grad_cam": grad_cam,
    }


# --- internals ----------------------------------------------------------------------------------


class _CamHead(nn.Module):
    """The model from the target layer on: what the library differentiates (see the module notes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.target = nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.target(features))


def _trunk(
    model: nn.Module, x: torch.Tensor, precision: str, full_model: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target-layer features in fp32, cut from the trunk's graph (fast path), and the logits."""
    with torch.no_grad():
        if full_model:  # the library cannot take bf16 activations, so this path stays fp32
            return x, model(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            features = _inference_trunk(model)(x)
        features = features.float()
        logits = model.forward_head(features)
    return features, logits


class _Trunk(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


_TRUNKS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Callable]] = weakref.WeakKeyDictionary()
_TRUNKS_LOCK = threading.Lock()


def _inference_trunk(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model.forward_features`` with every BatchNorm folded into its convolution (eval only).

    Folding saves ~15 % of the trunk's time on a CPU and changes activations only by float rounding
    (tests compare the maps with the library's default use). The folded copy is cached per model and
    rebuilt when any parameter or buffer changes (in-place updates bump ``_version``; ``.to()``
    moves ``data_ptr``). Models fx cannot trace keep their own ``forward_features``.
    """
    if model.training:
        return model.forward_features
    tensors = [*model.parameters(), *model.buffers()]
    stamp = tuple((t.data_ptr(), t._version) for t in tensors)
    with _TRUNKS_LOCK:
        cached = _TRUNKS.get(model)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            from torch.fx.experimental.optimization import fuse

            trunk: Callable = fuse(_Trunk(model)).eval()
            if _is_channels_last(model):
                trunk = trunk.to(memory_format=torch.channels_last)
        except Exception:  # any tracing failure: fall back to the exact unfused trunk
            trunk = model.forward_features
        _TRUNKS[model] = (stamp, trunk)
        return trunk


def _run_cam(
    method: str, model: nn.Module, layer: nn.Module, inputs: torch.Tensor, pairs: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised maps and raw (≥ 0) maps, one per (image, class) pair."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if not pairs:
        return np.zeros((0, 1, 1), np.float32), np.zeros((0, 1, 1), np.float32)
    targets = [ClassifierOutputTarget(c) for _, c in pairs]
    with _CAM_LOCK:
        cam = _recording_class(METHODS[method])(model=model, target_layers=[layer])
        try:
            maps = cam(input_tensor=inputs, targets=targets)
            raw = np.maximum(cam.raw_cam, 0).astype(np.float32)
        finally:
            cam.activations_and_grads.release()
            model.zero_grad(set_to_none=True)
            cam.outputs = None
    return maps.astype(np.float32), raw


@functools.cache
def _recording_class(name: str) -> type:
    """The library's CAM class, also keeping the unnormalised map its ``get_cam_image`` computes."""
    import pytorch_grad_cam

    base = getattr(pytorch_grad_cam, name)

    def get_cam_image(self: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        cam = base.get_cam_image(self, *args, **kwargs)
        self.raw_cam = cam
        return cam

    return type(f"Recording{name}", (base,), {"get_cam_image": get_cam_image})


def _assemble(
    xrays: list[XrayImage],
    probs: np.ndarray,
    pairs: list[tuple[int, int]],
    cams: np.ndarray,
    raws: np.ndarray,
    labels: list[str],
    preprocess: Preprocess,
    method: str,
    threshold: float,
) -> Iterator[ImageLocalization]:
    _, in_h, in_w = preprocess.input_size
    per_image: dict[int, list[FindingResult]] = {i: [] for i in range(len(xrays))}
    for (i, c), cam, raw in zip(pairs, cams, raws, strict=True):
        size = xrays[i].original_size
        crop = preprocess.crop_box(*size)
        boxes = boxes_from_map(_resize(cam, in_h, in_w), threshold, crop)
        per_image[i].append(FindingResult(labels[c], c, float(probs[i, c]), cam, raw, boxes, size, crop))
    for i, xr in enumerate(xrays):
        yield ImageLocalization(
            image=xr,
            method=method,
            threshold=threshold,
            probabilities={name: float(p) for name, p in zip(labels, probs[i], strict=True)},
            findings=tuple(per_image[i]),
        )


def boxes_from_map(
    heat: np.ndarray, threshold: float, region: tuple[float, float, float, float] | None = None
) -> tuple[Box, ...]:
    """Connected components (8-neighbour) of ``heat >= threshold`` as boxes, highest peak first.

    ``region`` ``(x0, y0, x1, y1)`` is where ``heat``'s grid lies in original pixels (default: the grid).
    """
    import cv2

    h, w = heat.shape
    x0, y0, x1, y1 = region if region is not None else (0.0, 0.0, float(w), float(h))
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    count, labels, stats, _ = cv2.connectedComponentsWithStats((heat >= threshold).astype(np.uint8), 8)
    boxes = []
    for k in range(1, count):
        left, top, bw, bh = (int(v) for v in stats[k, :4])
        patch = heat[top : top + bh, left : left + bw][labels[top : top + bh, left : left + bw] == k]
        boxes.append(
            Box(
                x0 + left * sx, y0 + top * sy, x0 + (left + bw) * sx, y0 + (top + bh) * sy, float(patch.max())
            )
        )
    return tuple(sorted(boxes, key=lambda b: -b.score))


def _resize(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if cam.shape == (height, width):
        return cam
    return np.clip(cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _paste(cam: np.ndarray, size: tuple[int, int], region: tuple[float, float, float, float]) -> np.ndarray:
    height, width = size
    x0, y0, x1, y1 = (round(v) for v in region)
    out = np.zeros((height, width), np.float32)
    resized = _resize(cam, max(y1 - y0, 1), max(x1 - x0, 1))
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y1, height), min(x1, width)
    out[top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0]
    return out


def _finding_indices(findings: Sequence[str] | None, labels: list[str]) -> list[int]:
    if findings is None:
        return list(range(len(labels)))
    if isinstance(findings, str):
        findings = [findings]
    lookup = {name.lower(): i for i, name in enumerate(labels)}
    indices = []
    for name in findings:
        if name.lower() not in lookup:
            raise DiraZooError(f"unknown finding {name!r}; this model knows: {', '.join(labels)}")
        indices.append(lookup[name.lower()])
    return list(dict.fromkeys(indices))


def _select(probs: np.ndarray, wanted: list[int], top_k: int | None) -> list[int]:
    if top_k is None:
        return wanted
    return sorted(wanted, key=lambda c: -probs[c])[:top_k]


def _chunks(items: list[ImageInput], size: int) -> Iterable[list[ImageInput]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _is_channels_last(model: nn.Module) -> bool:
    conv = next((p for p in model.parameters() if p.ndim == 4), None)
    return conv is not None and conv.is_contiguous(memory_format=torch.channels_last) and conv.shape[-1] > 1


def _last_feature_layer(model: nn.Module) -> nn.Module:
    """The module whose output ``forward_features`` returns, for timm ResNets ``layer4``."""
    info = getattr(model, "feature_info", None)
    if info:
        module = dict(model.named_modules()).get(info[-1]["module"])
        if module is not None:
            return module
    raise DiraZooError(f"cannot find the last feature layer of {type(model).__name__}; pass target_layer")
