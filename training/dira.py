"""DiRA's three losses put together: one module that the trainer (and DDP) wraps.

``forward(view1, view2, target)`` returns the discriminative loss and, unless the mode is ``di``,
the restoration MSE and the restored image; the adversarial term needs the discriminator and is
added by the trainer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import methods
from .config import RunConfig
from .networks import Generator


class DiRAModel(nn.Module):
    """Generator (U-Net + projection head) + the discriminative method (+ its momentum encoder/queue)."""

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.generator = Generator(cfg.model.architecture, nn.Identity(), restore=cfg.mode != "di")
        self.method, self.generator.projector = methods.build(cfg.method, self.generator.num_features)
        self.method.attach(self.generator)

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, target: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        z1, restored = self.generator(view1)
        losses = {"dis": self.method.loss(z1, view2, self.generator)}
        if restored is not None:
            losses["res"] = F.mse_loss(restored.float(), target.float())
        return losses, restored


def lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: MSE of the patch map to all-ones (real) or all-zeros (fake)."""
    prediction = prediction.float()
    return F.mse_loss(prediction, torch.full_like(prediction, float(real)))
