"""Official DiRA checkpoints (``.pth``) → our weights: a timm encoder state dict and the U-Net decoder.

The official code writes three layouts (see ``docs/dira_method.md`` §2.3 and §6):

``unet``
    A flat segmentation_models_pytorch U-Net state dict (``best_checkpoint.pth``, ``unet.pth`` and the
    released ``DiRA_*.pth``): ``encoder.*``, ``decoder.blocks.{i}.conv{1,2}.{0,1}.*``,
    ``segmentation_head.0.*``.
``checkpoint``
    The training ``checkpoint.pth``: ``{"epoch", "arch", "state_dict", "optimizer", ...}`` whose state dict
    holds ``module.encoder_q.backbone.{encoder,decoder,segmentation_head}.*``, the projection MLP
    ``module.encoder_q.fc.*``, the momentum copy ``module.encoder_k.*`` and the queue.
``di``
    Mode ``di`` (MoCo-v2 only): a torchvision ResNet-50 with the MLP head ``fc.0``/``fc.2``, usually as
    ``module.encoder_q.*`` plus ``encoder_k`` and the queue.

Everything that is not the query encoder (and its decoder) is dropped: the momentum encoder, the queue,
the projection head (``fc.*``), optimizer state. Files are read with ``torch.load(weights_only=True)``
only, so a checkpoint that needs arbitrary unpickling is refused instead of executed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import WeightsError

LAYOUTS = ("unet", "checkpoint", "di")

#: Prefixes of everything that is training machinery, not weights we keep.
_DROPPED_PREFIXES = ("encoder_k.", "queue", "fc.", "projection_head.", "prototypes.", "predictor.")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


@dataclass(frozen=True)
class ConvertedWeights:
    """The query encoder in timm keys (no prefix); for U-Nets also ``decoder.*`` + ``segmentation_head.*``."""

    encoder: dict[str, torch.Tensor]
    decoder: dict[str, torch.Tensor] | None
    layout: str
    dropped: tuple[str, ...] = ()  # keys of the source that were left out (momentum encoder, queue, fc, ...)

    @property
    def architecture(self) -> str:
        return infer_resnet_architecture(self.encoder)


def load_checkpoint(path: str | Path) -> object:
    """``torch.load(weights_only=True)`` on CPU, every failure turned into one clear :class:`WeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": we report failures ourselves
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
        text = str(exc)
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if unsafe:
            raise WeightsError(
                f"{path}: refusing to unpickle it: it holds a {unsafe.group(1)} object, not only tensors and "
                "plain containers (torch.load weights_only=True); re-save it as a plain state dict"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
        why = detail.group(1) if detail else (text.strip().splitlines() or ["truncated or empty file"])[0]
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {why[:160] or 'empty'})"
        ) from None


def convert_official(path: str | Path) -> ConvertedWeights:
    """Read an official DiRA ``.pth`` in any of the three layouts and return our weights."""
    obj = load_checkpoint(path)
    try:
        return convert_state_dict(obj)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


def convert_state_dict(obj: object) -> ConvertedWeights:
    """The in-memory half of :func:`convert_official` (also used for ``.safetensors`` files)."""
    wrapped = False
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                wrapped = True
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(
            f"not a state dict (found {type(obj).__name__}); expected a mapping of tensor names"
        )
    state = dict(obj)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"not a state dict: {len(bad)} entries are not tensors (e.g. {bad[0]!r})")

    dropped: list[str] = []
    renamed: dict[str, torch.Tensor] = {}
    had_query = any(_strip_module(k).startswith("encoder_q.") for k in state)
    for key, value in state.items():
        name = _strip_module(key)
        if had_query:
            if not name.startswith("encoder_q."):
                dropped.append(key)  # encoder_k.*, queue, queue_ptr
                continue
            name = name[len("encoder_q.") :]
        if name.startswith("backbone."):
            name = name[len("backbone.") :]
        renamed[name] = value

    has_unet = any(k.startswith("encoder.") for k in renamed)
    encoder: dict[str, torch.Tensor] = {}
    decoder: dict[str, torch.Tensor] = {}
    for name, value in renamed.items():
        if has_unet:
            if name.startswith("encoder."):
                enc_name = name[len("encoder.") :]
                if enc_name.startswith(("fc.", "classifier.")):
                    dropped.append(name)
                else:
                    encoder[enc_name] = value
            elif name.startswith(("decoder.", "segmentation_head.")):
                decoder[name] = value
            else:
                dropped.append(name)  # the projection MLP fc.* of the training checkpoint
        elif name.startswith(_DROPPED_PREFIXES) or name in ("queue", "queue_ptr"):
            dropped.append(name)
        else:
            encoder[name] = value

    if "conv1.weight" not in encoder or not any(re.match(r"layer\d\.", k) for k in encoder):
        sample = ", ".join(list(state)[:4])
        raise WeightsError(
            "no recognisable DiRA encoder keys (expected encoder.*, module.encoder_q.backbone.encoder.* or a "
            f"ResNet's conv1/layer1..layer4); the file starts with: {sample}"
        )
    if has_unet:
        layout = "checkpoint" if (had_query or wrapped) else "unet"
    else:
        layout = "di"
    return ConvertedWeights(encoder=encoder, decoder=decoder or None, layout=layout, dropped=tuple(dropped))


def _strip_module(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


_RESNETS = {
    # (bottleneck?, blocks per stage) -> timm name
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


def infer_resnet_architecture(encoder: Mapping[str, torch.Tensor], default: str = "resnet50") -> str:
    """Which torchvision/timm ResNet a state dict (timm key names) belongs to, from its block layout."""
    blocks = [0, 0, 0, 0]
    for key in encoder:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            stage, index = int(m.group(1)) - 1, int(m.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    bottleneck = any(k.endswith("conv3.weight") for k in encoder)
    return _RESNETS.get((bottleneck, tuple(blocks)), default)


__all__ = [
    "LAYOUTS",
    "ConvertedWeights",
    "convert_official",
    "convert_state_dict",
    "infer_resnet_architecture",
]
