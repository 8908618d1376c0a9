"""The networks DiRA weights fit: a timm ResNet classifier/backbone and a U-Net on the same encoder.

Parameter names are the contract. The encoder is a plain timm ResNet (torchvision-compatible names:
``conv1``, ``bn1``, ``layer1``..``layer4``), and the U-Net mirrors the key layout of the official DiRA
checkpoints (segmentation_models_pytorch 0.1.3): ``encoder.*``, ``decoder.blocks.{i}.conv{1,2}.{0,1}.*``
and ``segmentation_head.0.*``. So an official flat U-Net state dict loads unchanged, and the
``encoder.*`` part of any U-Net loads into plain timm after stripping the prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import timm
import torch
from torch import nn

from .errors import WeightsError

DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)


def create_encoder(architecture: str) -> nn.Module:
    """A headless timm ResNet whose ``forward_intermediates`` yields the five U-Net skip maps."""
    return timm.create_model(architecture, pretrained=False, num_classes=0)


def encoder_channels(encoder: nn.Module) -> list[int]:
    """Channels of the stem (stride 2) and layer1..layer4 outputs, read from the model itself."""
    return [info["num_chs"] for info in encoder.feature_info]


class DecoderBlock(nn.Module):
    """Nearest ×2 upsampling, concatenation with the skip, then two conv-BN-ReLU layers."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetDecoder(nn.Module):
    """Five decoder blocks from the deepest feature map back to the input resolution."""

    def __init__(self, encoder_chs: Sequence[int], decoder_chs: Sequence[int] = DECODER_CHANNELS) -> None:
        super().__init__()
        # encoder_chs = (stem, layer1, layer2, layer3, layer4); skips for blocks 1..4 are layer3..stem.
        deep = encoder_chs[-1]
        skips = list(reversed(encoder_chs[:-1])) + [0]
        ins = [deep, *decoder_chs[:-1]]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_chs, strict=True)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        *skips, x = features
        skips = list(reversed(skips)) + [None]
        for block, skip in zip(self.blocks, skips, strict=True):
            x = block(x, skip)
        return x


class UNet(nn.Module):
    """DiRA's generator / segmentation network: timm ResNet encoder + U-Net decoder + 3×3 conv head.

    ``activation="sigmoid"`` gives DiRA's restoration output in [0, 1]; segmentation transfer
    usually keeps logits (``activation=None``) and applies the sigmoid inside the loss.
    """

    def __init__(self, architecture: str = "resnet50", out_channels: int = 1, activation: str | None = None):
        super().__init__()
        if activation not in (None, "sigmoid"):
            raise ValueError(f"activation must be None or 'sigmoid', not {activation!r}")
        self.architecture = architecture
        self.encoder = create_encoder(architecture)
        self.decoder = UNetDecoder(encoder_channels(self.encoder))
        head = nn.Conv2d(DECODER_CHANNELS[-1], out_channels, 3, padding=1)
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)
        self.segmentation_head = nn.Sequential(head, nn.Sigmoid() if activation else nn.Identity())

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five skip maps (stride 2, 4, 8, 16, 32)."""
        return self.encoder.forward_intermediates(x, intermediates_only=True)

    def decode(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.segmentation_head(self.decoder(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def create_classifier(architecture: str, num_classes: int) -> nn.Module:
    """A timm classifier (``num_classes=0``: a pooled backbone)."""
    return timm.create_model(architecture, pretrained=False, num_classes=num_classes)


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier head: the only keys allowed to be missing or unexpected."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(classifier, nn.Module):
        return set()
    name = next((n for n, m in model.named_modules() if m is classifier), None)
    if not name:
        return set()
    return {f"{name}.{k}" for k in classifier.state_dict()}


def load_checked(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    allowed: set[str] | None = None,
    allowed_prefixes: tuple[str, ...] = (),
    what: str = "weights",
) -> list[str]:
    """Load ``state`` into ``model``; only head keys (``allowed``) may be missing, unexpected or resized.

    Head tensors whose shape does not fit (another number of classes) are dropped and re-initialised.
    Returns the keys left at their initial values. Anything else raises a :class:`WeightsError`
    naming the offending keys, because a silently half-loaded backbone is the worst failure.
    """
    allowed = set(allowed or ()) | head_keys(model)

    def ok(key: str) -> bool:
        return key in allowed or key.startswith(allowed_prefixes)

    own = model.state_dict()
    state = dict(state)
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    bad_shapes = [k for k in mismatched if not ok(k)]
    if bad_shapes:
        k = bad_shapes[0]
        raise WeightsError(
            f"{what} do not fit {type(model).__name__}: {len(bad_shapes)} tensors have other shapes "
            f"(first: {k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}); wrong architecture?"
        )
    for k in mismatched:
        del state[k]
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not ok(k)]
    unexpected = [k for k in result.unexpected_keys if not ok(k)]
    if missing or unexpected:
        raise WeightsError(
            f"{what} do not fit {type(model).__name__}: "
            f"{len(missing)} missing (e.g. {_first(missing)}), {len(unexpected)} unexpected "
            f"(e.g. {_first(unexpected)}); wrong architecture?"
        )
    return sorted(set(result.missing_keys) | set(mismatched))


def _first(keys: Sequence[str]) -> str:
    return ", ".join(keys[:3]) if keys else "none"
