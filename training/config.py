"""The typed configuration of a pretraining run: dataclasses with the paper's defaults, YAML, overrides.

Defaults are the official DiRA_MoCo-v2 ``dir`` stage (ResNet-50, 224², batch 256, SGD 0.03 cosine),
so a YAML file only names what differs. A file may name a ``base:`` file (relative to itself) whose
values it extends, and the command line overrides any leaf with ``section.key=value`` (YAML-typed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from dira_zoo.errors import DiraZooError

MODES = ("di", "dir", "dira")
VARIANTS = ("moco", "barlowtwins", "simsiam")


class ConfigError(DiraZooError):
    """A configuration file or override that cannot be used."""


@dataclass
class ModelConfig:
    architecture: str = "resnet50"  # any timm ResNet with feature_info; resnet18 for CPU runs


@dataclass
class MoCoConfig:
    """MoCo-v2 as DiRA ran it (``--mlp --moco-t 0.2``)."""

    hidden_dim: int = 2048
    dim: int = 128
    queue_size: int = 65536
    momentum: float = 0.999
    temperature: float = 0.2


@dataclass
class BarlowTwinsConfig:
    """Barlow Twins' published defaults (Zbontar et al. 2021): 8192-8192-8192 projector, λ = 5e-3."""

    projector: tuple[int, ...] = (8192, 8192, 8192)
    lambda_offdiag: float = 5e-3


@dataclass
class SimSiamConfig:
    """SimSiam's published defaults (Chen & He 2021): 3-layer 2048 projector, 2048-512-2048 predictor."""

    dim: int = 2048
    pred_dim: int = 512
    fix_pred_lr: bool = True  # the predictor keeps the base lr (no cosine), as SimSiam recommends


@dataclass
class MethodConfig:
    variant: str = "moco"
    sync_bn: bool = False  # SyncBatchNorm under multi-GPU DDP (Barlow Twins/SimSiam recipes; CUDA only)
    moco: MoCoConfig = field(default_factory=MoCoConfig)
    barlowtwins: BarlowTwinsConfig = field(default_factory=BarlowTwinsConfig)
    simsiam: SimSiamConfig = field(default_factory=SimSiamConfig)


@dataclass
class DistortionConfig:
    """Probabilities of the restorative distortions (§3.5); the rest of the mass is "no distortion"."""

    cutout: float = 0.30
    outpaint: float = 0.05
    swap: float = 0.30


@dataclass
class AugmentConfig:
    """The two-view pipeline of §3 (sizes in pixels of the crop)."""

    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    flip_p: float = 0.5
    flip_target: bool = True  # False reproduces the official quirk: the target is never flipped
    distortion: DistortionConfig = field(default_factory=DistortionConfig)


@dataclass
class DataConfig:
    format: str = "chestxray14"  # chestxray14 | folder
    root: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"  # chestxray14 split for validation; None: no validation
    val_fraction: float = 0.1  # folder format: share of images (by sorted path) kept for validation
    image_size: int = 224
    cache_dir: str | None = None  # memmap caches from `python -m training.cache`; None: decode files
    cache_size: int = 512  # side of the cached images (crops are taken from these)
    workers: int = 4  # DataLoader workers per process (the official 16 over 4 GPUs)


@dataclass
class OptimConfig:
    batch_size: int = 256  # global: divided over the processes
    epochs: int = 1200
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    d_lr: float = 2e-4
    d_betas: tuple[float, float] = (0.5, 0.999)


@dataclass
class LossConfig:
    dis: float = 1.0
    res: float = 10.0
    adv: float = 0.001


@dataclass
class RunConfig:
    """Everything about one run; ``mode`` picks which losses are on."""

    mode: str = "dir"
    out_dir: str = "runs/dir_moco"
    seed: int = 0
    init_from: str | None = None  # a run dir whose last.pt seeds generator + method (staged schedule)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast; GPU)
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = True
    max_steps: int | None = None  # stop (and save) after this many steps in total
    save_every: int = 0  # also save last.pt every N steps (0: at epoch ends only)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def validate(self, world_size: int = 1) -> RunConfig:
        """Raise :class:`ConfigError` for a setting that cannot work; returns self."""
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.method.variant not in VARIANTS:
            raise ConfigError(
                f"method.variant must be one of {', '.join(VARIANTS)}, not {self.method.variant!r}"
            )
        batch = self.optim.batch_size
        if batch % world_size:
            raise ConfigError(f"optim.batch_size {batch} does not divide over {world_size} processes")
        if self.method.variant == "moco" and self.method.moco.queue_size % batch:
            raise ConfigError(
                f"method.moco.queue_size {self.method.moco.queue_size} must be a multiple of the "
                f"global batch {batch}"
            )
        if self.data.image_size % 32:
            raise ConfigError(f"data.image_size must be a multiple of 32 (U-Net), not {self.data.image_size}")
        dist = self.augment.distortion
        if min(dist.cutout, dist.outpaint, dist.swap) < 0 or dist.cutout + dist.outpaint + dist.swap > 1:
            raise ConfigError("augment.distortion probabilities must be >= 0 and sum to at most 1")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, not {self.precision!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples become lists so the dict is YAML/JSON friendly and survives ``weights_only`` loading."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def from_dict(data: dict[str, Any], cls: type = RunConfig, where: str = "") -> Any:
    """Build a config dataclass from nested dicts, rejecting unknown keys by name."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {where}{name} must be a mapping")
            kwargs[name] = from_dict(value, hint, f"{where}{name}.")
        else:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a dict, with its ``base:`` chain merged underneath it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping")
    base = data.pop("base", None)
    return _merge(read_yaml(path.parent / base), data) if base else data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "mode=dira"]`` → nested dict updates (values parsed as YAML)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """The run config from a YAML file (or the defaults) plus command-line overrides."""
    data = read_yaml(path) if path else {}
    return from_dict(apply_overrides(data, list(overrides)))
