"""The model registry: one frozen :class:`Weights` record per published set of weights.

Data first, as in timm's ``_registry``: adding a model is adding a record, nothing else. A record
pins the Hub repository *and* a commit revision *and* the sha256 of every file, so what a name means
never changes under a user. Records whose weights are not published yet keep ``revision=None`` and
loading them explains what to do instead.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UnknownModelError
from .transforms import IMAGENET_MEAN, IMAGENET_STD, NO_NORM_MEAN, NO_NORM_STD, Preprocess

PAPER = (
    "Haghighi F., Hosseinzadeh Taher M. R., Gotway M. B., Liang J. DiRA: Discriminative, Restorative, "
    "and Adversarial Learning for Self-supervised Medical Image Analysis. CVPR 2022, arXiv:2204.10437"
)

#: Label order of ChestX-ray14 in DiRA's (BenchmarkTransferLearning's) split files.
CHESTXRAY14_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip

#: Folder of weights shipped inside the package (the embedded default model).
EMBEDDED_ROOT = Path(__file__).parent / "data" / "models"


@dataclass(frozen=True)
class Weights:
    """Everything needed to fetch, verify, build and feed one set of weights."""

    name: str
    architecture: str
    description: str
    hub_id: str | None = None
    revision: str | None = None  # a 40-hex commit: pinned, never a branch
    files: tuple[tuple[str, str], ...] = ()  # (file name, sha256)
    embedded: str | None = None  # folder name under EMBEDDED_ROOT
    num_classes: int = 0
    label_names: tuple[str, ...] = ()
    preprocess: Preprocess = field(default_factory=Preprocess)
    pretraining_data: str = "NIH ChestX-ray14"
    variant: str = "moco"  # discriminative method: moco | barlowtwins | simsiam
    stage: str = "dira"  # di | dir | dira | finetuned
    license: str = "apache-2.0"
    paper: str = PAPER

    @property
    def published(self) -> bool:
        """True when the weights can actually be obtained (pinned Hub revision or shipped in the package)."""
        return self.embedded is not None or (self.hub_id is not None and self.revision is not None)

    @property
    def sha256(self) -> dict[str, str]:
        """File name → pinned sha256."""
        return dict(self.files)

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.files)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.preprocess.input_size

    def transforms(self) -> Preprocess:
        """The preprocessing these weights expect (grey [0, 1] image → normalised tensor)."""
        return self.preprocess

    @property
    def meta(self) -> dict[str, Any]:
        """A JSON-friendly summary, as ``dira-zoo info`` prints it."""
        return {
            "name": self.name,
            "description": self.description,
            "architecture": self.architecture,
            "input_size": list(self.input_size),
            "num_classes": self.num_classes,
            "label_names": list(self.label_names),
            "hub_id": self.hub_id,
            "revision": self.revision,
            "files": self.sha256,
            "embedded": self.embedded,
            "published": self.published,
            "preprocess": self.preprocess.as_dict(),
            "pretraining_data": self.pretraining_data,
            "variant": self.variant,
            "stage": self.stage,
            "license": self.license,
            "paper": self.paper,
        }


_DIRA_BACKBONE = Preprocess(input_size=(3, 224, 224), mean=NO_NORM_MEAN, std=NO_NORM_STD)


def _paper_backbone(variant: str, title: str) -> Weights:
    return Weights(
        name=f"dira_{variant}_chestxray14",
        architecture="resnet50",
        description=(
            f"DiRA_{title} ResNet-50 encoder (+ U-Net decoder) pretrained on ChestX-ray14 "
            "(dir 1200 epochs, then dira 400 epochs), for transfer learning."
        ),
        hub_id=f"dira-zoo/dira_{variant}_chestxray14",
        revision=None,  # not published yet: train (or convert official weights) and push, then pin here
        variant=variant,
        stage="dira",
        preprocess=_DIRA_BACKBONE,
    )


#: Shipped inside the package (``dira_zoo/data/models/``) so the CLI and the demo work offline. Written by
#: ``python -m training.experiments.default_model``, which prints these fields; see its model card.
_PHANTOM_DEMO = Weights(
    name="dira_phantom_resnet10t",
    architecture="resnet10t",
    description=(
        "Demo: a DiRA-pretrained ResNet-10t fine-tuned on synthetic chest phantoms (5 findings). "
        "Not for clinical use."
    ),
    files=(
        ("config.json", "44d89fd26665fbb3d7d5d29d490209d34dd07e66fa3159d7073d587a0efbf9d7"),
        ("model.safetensors", "7f813dd103c0c37f0bcb5d8862d3dedf7108471c198ff2d0544d19125dd09ca9"),
        ("README.md", "9bdeb64b48147db32110d10f7afeabc6ec5f1bd46f3849b2548fc9dd05bd1a23"),
    ),
    embedded="dira_phantom_resnet10t",
    num_classes=5,
    label_names=("Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax"),
    preprocess=Preprocess(input_size=(3, 128, 128), mean=NO_NORM_MEAN, std=NO_NORM_STD, crop_pct=0.875),
    pretraining_data="synthetic chest phantoms (training.phantom)",
    variant="moco",
    stage="finetuned",
)

_REGISTRY: dict[str, Weights] = {
    w.name: w
    for w in (
        _paper_backbone("moco", "MoCo-v2"),
        _paper_backbone("barlowtwins", "BarlowTwins"),
        _paper_backbone("simsiam", "SimSiam"),
        _PHANTOM_DEMO,
    )
}

#: The model ``dira-localize`` and the demo use when none is named.
DEFAULT_MODEL: str | None = _PHANTOM_DEMO.name


def register(weights: Weights) -> Weights:
    """Add a record (used for the embedded model and by downstream projects with their own weights)."""
    if weights.name in _REGISTRY:
        raise ValueError(f"a model named {weights.name!r} is already registered")
    _REGISTRY[weights.name] = weights
    return weights


def list_models(pattern: str | None = None, *, published_only: bool = False) -> list[str]:
    """Registered names, optionally filtered by a shell-style pattern (``"dira_*"``)."""
    names = sorted(_REGISTRY)
    if pattern:
        names = fnmatch.filter(names, pattern)
    if published_only:
        names = [n for n in names if _REGISTRY[n].published]
    return names


def get_weights(name: str) -> Weights:
    """The record for ``name``; an unknown name raises an error that suggests close names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} `dira-zoo list` shows the registered names."
        ) from None


__all__ = [
    "CHESTXRAY14_LABELS", "DEFAULT_MODEL", "EMBEDDED_ROOT", "IMAGENET_MEAN", "IMAGENET_STD", "Weights",
    "get_weights", "list_models", "register",
]  # fmt: skip
