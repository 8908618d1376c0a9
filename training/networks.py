"""DiRA's networks: the generator (the zoo's U-Net plus a projection head) and the PatchGAN discriminator.

The generator's U-Net is :class:`dira_zoo.models.UNet` itself, so its state dict (``encoder.*``,
``decoder.*``, ``segmentation_head.*``) is already the zoo's layout and the export only copies it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dira_zoo.models import UNet


def mlp(
    in_features: int,
    dims: Sequence[int],
    *,
    batch_norm: bool,
    last_bias: bool = True,
    last_norm: bool = False,
) -> nn.Sequential:
    """Linear layers with ReLU between; ``batch_norm`` puts BN (and drops the bias) in hidden layers.

    ``last_norm`` ends with an affine-free BN (SimSiam's projector); hidden biases are dropped when a
    BN follows them because the BN's shift makes them redundant.
    """
    layers: list[nn.Module] = []
    prev = in_features
    for i, dim in enumerate(dims):
        last = i == len(dims) - 1
        layers.append(nn.Linear(prev, dim, bias=last_bias if last else not batch_norm))
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(dim))
            layers.append(nn.ReLU(inplace=True))
        elif last_norm:
            layers.append(nn.BatchNorm1d(dim, affine=False))
        prev = dim
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """U-Net (encoder, decoder, 1-channel sigmoid head) + a projection head on the pooled encoder output.

    ``restore=False`` (mode ``di``) removes the decoder and head: the encoder trains alone, with the
    same parameter names as in the other modes.
    """

    def __init__(self, architecture: str, projector: nn.Module, restore: bool = True) -> None:
        super().__init__()
        self.unet = UNet(architecture, out_channels=1, activation="sigmoid")
        if not restore:
            self.unet.decoder = None
            self.unet.segmentation_head = None
        self.restore = restore
        self.projector = projector

    @property
    def encoder(self) -> nn.Module:
        return self.unet.encoder

    @property
    def num_features(self) -> int:
        return self.unet.encoder.num_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(projection, restored image or None)``; one encoder pass serves both heads."""
        features = self.unet.encode(x)
        pooled = self.unet.encoder.forward_head(features[-1], pre_logits=True)
        restored = self.unet.decode(features) if self.restore else None
        return self.projector(pooled), restored

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Projection of a view without decoding it (the second view of the symmetric methods)."""
        return self.projector(self.unet.encoder(x))


class Embedder(nn.Module):
    """Encoder + pooling + projector: what MoCo's momentum (key) encoder copies from the generator."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))


class PatchDiscriminator(nn.Module):
    """DiRA's PatchGAN: 3×3 convs 64-128-256 (stride 2) and 512 (stride 1), then a 1-channel map.

    InstanceNorm (no affine) after every conv but the first, LeakyReLU 0.2, all convs with bias,
    weights ~ N(0, 0.02). A 224² image gives a 28×28 map (side / 8), each cell seeing ≈47 px.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            stride = 1 if i == len(widths) - 1 else 2
            layers.append(nn.Conv2d(prev, width, 3, stride=stride, padding=1))
            if i:
                layers.append(nn.InstanceNorm2d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = width
        layers.append(nn.Conv2d(prev, 1, 3, padding=1))
        self.model = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
