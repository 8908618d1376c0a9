"""A transparent model for localization tests: its Grad-CAM for class 0 is the pooled image itself.

So the brightest region of an input is, by construction, where the "lesion" is, and a test can check
that boxes and map peaks land there in original pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class BrightLesionModel(nn.Module):
    num_classes = 2

    def __init__(self, labels: Sequence[str] = ("Mass", "Normal"), size: int = 128, crop_pct: float = 1.0):
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()
        self.pretrained_cfg = {
            "label_names": list(labels),
            "input_size": [3, size, size],
            "mean": [0.0] * 3,
            "std": [1.0] * 3,
            "crop_pct": crop_pct,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x[:, :1], 4)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
