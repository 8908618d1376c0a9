"""The steps every phantom experiment shares, each cached on disk so a rerun skips finished work.

phantoms (:mod:`training.phantom`) → DiRA pretraining (:class:`training.trainer.Trainer`) and export
(:func:`training.export.export_run`) → fine-tuning (:func:`training.finetune.finetune`) → scores on the
held-out test split: mean/per-class ROC-AUC and Grad-CAM localization (IoBB accuracy, pointing game)
with :func:`dira_zoo.evaluation.evaluate_model`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dira_zoo.errors import DiraZooError

from ..nih_format import BBOX_NAME, DIRA_SPLITS
from ..phantom_render import FINDINGS

#: IoBB thresholds reported (the paper's T(IoBB) values that a coarse CAM can reach).
IOBB_THRESHOLDS = ("0.1", "0.25", "0.5")


class ExperimentError(DiraZooError):
    """An experiment folder or setting that cannot be used."""


@dataclass(frozen=True)
class PhantomSet:
    """How many phantoms, their side, and the share of patients held out for validation and test."""

    n: int
    size: int
    seed: int = 0
    val_fraction: float = 0.13
    test_fraction: float = 0.2


@dataclass(frozen=True)
class PretrainSetup:
    """A small DiRA (MoCo-v2) pretraining run; every field maps to a ``training.config`` key."""

    arch: str
    image_size: int  # crop side; the phantoms may be larger
    batch_size: int
    epochs: int
    queue_size: int = 256
    hidden_dim: int = 256
    dim: int = 64
    lr: float = 0.03
    workers: int = 0


@dataclass(frozen=True)
class FinetuneSetup:
    """Fine-tuning of one cell: epochs per label fraction keep the number of updates comparable."""

    image_size: int
    batch_size: int
    epochs: dict[float, int]  # label fraction (percent) -> epochs
    lr: float = 1e-3
    workers: int = 0
    crop_scale: float = 0.08  # smallest RandomResizedCrop area (the protocol's 0.08 by default)


def make_phantoms(spec: PhantomSet, out: Path, *, progress: bool = True) -> Path:
    """Write the phantom set once; a folder already holding the same set is reused as is."""
    from ..phantom import generate

    params = out / "phantom.json"
    if params.is_file():
        saved = json.loads(params.read_text())
        mine = {"n": spec.n, "size": spec.size, "seed": spec.seed}
        mine |= {"val_fraction": spec.val_fraction, "test_fraction": spec.test_fraction}
        if any(saved.get(k) != v for k, v in mine.items()):
            raise ExperimentError(f"{out}: holds another phantom set ({params}); choose another --out")
        return out
    generate(
        spec.n,
        out,
        spec.size,
        spec.seed,
        val_fraction=spec.val_fraction,
        test_fraction=spec.test_fraction,
        overwrite=True,
        progress=progress,
    )
    return out


def pretrain(
    data: Path,
    run_dir: Path,
    mode: str,
    setup: PretrainSetup,
    *,
    seed: int = 0,
    init_from: Path | None = None,
) -> Path:
    """One DiRA_MoCo-v2 stage (``di``, ``dir`` or ``dira``) on the phantoms' train split; returns its
    export folder (the zoo format, loadable by :func:`dira_zoo.load`). Skipped when the export exists."""
    from ..checkpoint import LAST
    from ..config import load_config
    from ..export import export_run
    from ..trainer import Trainer

    export = run_dir / "export"
    if (export / "config.json").is_file():
        return export
    overrides = [
        f"mode={mode}",
        f"out_dir={run_dir}",
        f"seed={seed}",
        f"init_from={init_from or 'null'}",
        f"model.architecture={setup.arch}",
        "method.variant=moco",
        f"method.moco.queue_size={setup.queue_size}",
        f"method.moco.hidden_dim={setup.hidden_dim}",
        f"method.moco.dim={setup.dim}",
        "data.format=chestxray14",
        f"data.root={data}",
        "data.val_split=null",
        f"data.image_size={setup.image_size}",
        f"data.workers={setup.workers}",
        f"optim.batch_size={setup.batch_size}",
        f"optim.epochs={setup.epochs}",
        f"optim.lr={setup.lr}",
    ]
    cfg = load_config(None, overrides)
    resume = (run_dir / LAST).is_file()  # a stage interrupted mid-way continues where it stopped
    if Trainer(cfg, resume=resume).fit() != "done":  # SIGTERM: saved mid-way, not a finished stage
        raise ExperimentError(f"{run_dir}: pretraining was stopped; run the same command again to continue")
    return export_run(run_dir, export, checkpoint=LAST, overwrite=True)


def finetune(
    data: Path, source: str | Path, out: Path, setup: FinetuneSetup, *, fraction: float, seed: int, arch: str
) -> dict[str, Any]:
    """Fine-tune ``source`` (an export folder or ``"random"``) on ``fraction`` % of the train labels and
    score it on the test split; the scores are cached in ``out/scores.json``."""
    from ..finetune import FinetuneConfig
    from ..finetune import finetune as run_finetune

    cached = out / "scores.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    epochs = setup.epochs[fraction]
    cfg = FinetuneConfig(
        data=str(data),
        out=str(out),
        source=str(source),
        arch=arch,
        labels=FINDINGS,
        max_epochs=epochs,
        patience=epochs,  # a fixed budget: the best validation epoch is kept, nothing stops early
        batch_size=setup.batch_size,
        lr=setup.lr,
        label_fraction=fraction,
        image_size=setup.image_size,
        normalization="none",  # DiRA pretrains on [0, 1] images; every init gets the same input
        crop_scale=setup.crop_scale,
        tta="none",
        seed=seed,
        workers=setup.workers,
        progress=False,
    )
    metrics = run_finetune(cfg).metrics
    scores = {
        "mean_auc": metrics["mean_auc"],
        "per_class_auc": metrics["per_class_auc"],
        "train_images": metrics["train_images"],
        "epochs": metrics["epochs"],
        **localization(out / "model", data),
    }
    cached.write_text(json.dumps(scores, indent=2) + "\n")
    return scores


def heldout_boxes(data: Path) -> list:
    """The ground-truth boxes of the test split's images (in the phantoms' own pixels)."""
    from dira_zoo.evaluation import read_bbox_list

    from ..datasets import read_split_file

    names, _ = read_split_file(data / DIRA_SPLITS["test"])
    size = json.loads((data / "phantom.json").read_text())["size"]
    wanted = set(names)
    return [b for b in read_bbox_list(data / BBOX_NAME, reference_size=(size, size)) if b.image in wanted]


def localization(model_dir: Path, data: Path, *, threshold: float = 0.5) -> dict[str, Any]:
    """Grad-CAM boxes of the exported model on every annotated test image, scored against the truth."""
    import dira_zoo
    from dira_zoo.evaluation import evaluate_model

    model = dira_zoo.load(str(model_dir), device="cpu")
    report = evaluate_model(model, heldout_boxes(data), data / "images", threshold=threshold, batch_size=32)
    iobb = report["iobb"]
    return {
        "boxes": report["boxes"],
        "iobb_acc": {t: iobb["all"]["acc"][t] for t in IOBB_THRESHOLDS},
        "iobb_acc_per_class": {f: {t: v["acc"][t] for t in IOBB_THRESHOLDS} for f, v in iobb.items()},
        "pointing_game": report["pointing_game"]["all"],
        "pointing_game_per_class": report["pointing_game"],
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values; NaN when none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
    return mean, math.sqrt(var)
