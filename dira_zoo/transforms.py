"""The preprocessing a set of weights expects, as a small value object that travels with the weights.

Input is what :mod:`dira_zoo.io` produces (a grey float32 array in [0, 1], any size); output is the
normalised C×H×W tensor the network was trained on. Chest X-ray practice (and DiRA's transfer
protocol: ``Resize((256, 256))`` + ``CenterCrop(224)``) resizes the whole image to a square without
keeping the aspect ratio, so ``crop_pct`` < 1 means "resize to size/crop_pct, then centre-crop".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads on first use, so the registry (and `dira-zoo list`) stays quick
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: DiRA pretraining feeds ``ToTensor()`` output without normalisation.
NO_NORM_MEAN = (0.0, 0.0, 0.0)
NO_NORM_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Preprocess:
    """Grey image(s) in [0, 1] → normalised tensors of ``input_size``."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        channels = self.input_size[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean/std need {channels} values for input_size {self.input_size}")

    @property
    def resize_size(self) -> tuple[int, int]:
        _, h, w = self.input_size
        return round(h / self.crop_pct), round(w / self.crop_pct)

    def __call__(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """One grey H×W image → C×H×W float32 tensor."""
        return self.batch([image])[0]

    def batch(self, images: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        """Grey images of any sizes → one N×C×H×W batch."""
        import torch

        resized = [self._resize(_as_tensor(img)) for img in images]
        x = torch.stack(resized)
        channels = self.input_size[0]
        x = x.expand(-1, channels, -1, -1)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def _resize(self, grey: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        _, h, w = self.input_size
        rh, rw = self.resize_size
        x = grey[None, None]
        if x.shape[-2:] != (rh, rw):
            antialias = self.interpolation in ("bilinear", "bicubic")
            x = F.interpolate(x, size=(rh, rw), mode=self.interpolation, antialias=antialias)
        top, left = (rh - h) // 2, (rw - w) // 2
        return x[0, :, top : top + h, left : left + w].clamp_(0.0, 1.0)

    def crop_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The region ``(x0, y0, x1, y1)`` of an original ``height``×``width`` image that the input covers.

        Localization uses it to map feature-resolution maps back to original pixel coordinates.
        """
        _, h, w = self.input_size
        rh, rw = self.resize_size
        top, left = (rh - h) // 2, (rw - w) // 2
        sy, sx = height / rh, width / rw
        return left * sx, top * sy, (left + w) * sx, (top + h) * sy

    def as_dict(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    @classmethod
    def from_pretrained_cfg(cls, cfg: dict) -> Preprocess:
        """Build from a timm ``pretrained_cfg`` (the ``config.json`` of an export)."""
        return cls(
            input_size=tuple(cfg.get("input_size", (3, 224, 224))),
            mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
            std=tuple(cfg.get("std", IMAGENET_STD)),
            interpolation=cfg.get("interpolation", "bilinear"),
            crop_pct=float(cfg.get("crop_pct", 1.0)),
        )


def _as_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    import torch

    t = torch.as_tensor(np.asarray(image, dtype=np.float32)) if isinstance(image, np.ndarray) else image
    if t.ndim != 2:
        raise ValueError(f"expected a grey H×W image, got shape {tuple(t.shape)}")
    return t.float()
