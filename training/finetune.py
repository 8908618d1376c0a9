"""Transfer learning from any zoo source with the BenchmarkTransferLearning protocol (dira_method.md §5.1).

    python -m training.finetune --data ROOT --source dira_moco_chestxray14 --out runs/ft [--label-fraction 25]
    python -m training.finetune --data ROOT --task segmentation --source <U-Net export> --out runs/seg

Classification (ChestX-ray14 layout, :func:`training.datasets.chestxray14`): BCE on the sigmoid outputs
(unknown labels masked), Adam 2e-4, ReduceLROnPlateau(0.5, patience 5, threshold 1e-4) on the validation
loss, early stopping after 10 epochs without improvement, the checkpoint with the lowest validation
loss; test with TenCrop (sigmoid outputs averaged over the crops; ``--tta none`` for one centre crop);
per-class ROC-AUC and their mean. ``--label-fraction P`` keeps P % of the training list (the protocol's
``random.Random(99)`` shuffle); ``--linear-probe`` trains the head only (BatchNorm statistics frozen too).

Segmentation (``images/`` + same-named ``masks/``): the U-Net of ``dira_zoo.load(source, head="unet")``
(encoder + decoder; only the encoder when the source has no decoder), Dice loss, Adam 1e-3 with cosine
annealing, early stopping patience 20; test Dice at 0.5 pooled over the test set (and per image).

``--source``: anything :func:`dira_zoo.load` accepts, or ``random`` (``--arch``, no download). The run
folder gets ``metrics.json``, ``log.csv``, ``best.safetensors`` and ``model/``, the best model exported in
the zoo format (``label_names`` and test-time preprocessing included), so ``dira-localize --model
<out>/model`` just works.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

import dira_zoo
from dira_zoo.cli import run_guarded
from dira_zoo.errors import DiraZooError, WeightsError
from dira_zoo.evaluation import per_class_auc
from dira_zoo.hub import DECODER_NAME, label_names_for
from dira_zoo.models import UNet, create_classifier
from dira_zoo.registry import CHESTXRAY14_LABELS
from dira_zoo.transforms import NO_NORM_MEAN, NO_NORM_STD, Preprocess

from .datasets import DatasetError, chestxray14
from .transfer_data import (
    Classification,
    SegmentationPairs,
    eval_preprocess,
    label_fraction,
    segmentation_splits,
)

TASKS = ("classification", "segmentation")
#: Protocol defaults per task: learning rate, early-stopping patience.
DEFAULTS = {"classification": (2e-4, 10), "segmentation": (1e-3, 20)}


class FinetuneError(DiraZooError):
    """A fine-tuning run that cannot start as configured."""


@dataclass
class FinetuneConfig:
    """One run; every field is a ``--flag`` of ``python -m training.finetune``."""

    data: str
    out: str
    source: str = "random"
    task: str = "classification"
    arch: str = "resnet50"  # for --source random
    labels: tuple[str, ...] = CHESTXRAY14_LABELS
    max_epochs: int = 1000
    patience: int | None = None  # protocol default per task
    batch_size: int = 32
    lr: float | None = None  # protocol default per task
    label_fraction: float = 100.0  # percent of the training list
    linear_probe: bool = False
    image_size: int = 224
    normalization: str = "imagenet"  # classification inputs; segmentation uses [0, 1]
    #: smallest RandomResizedCrop area (protocol: 0.08). Small images whose findings are a few pixels
    #: wide lose them in such crops while keeping the label; 0.5+ keeps image and label consistent.
    crop_scale: float = 0.08
    tta: str = "tencrop"  # tencrop | none
    seed: int = 0
    device: str = "auto"
    workers: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise FinetuneError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if self.tta not in ("tencrop", "none"):
            raise FinetuneError(f"tta must be tencrop or none, not {self.tta!r}")
        if self.linear_probe and self.task != "classification":
            raise FinetuneError("--linear-probe applies to classification only")
        if not 0.0 < self.crop_scale <= 1.0:
            raise FinetuneError(f"crop_scale must be in (0, 1], not {self.crop_scale}")
        if self.max_epochs < 1 or self.batch_size < 1 or self.image_size < 32:
            raise FinetuneError("max_epochs and batch_size must be positive and image_size at least 32")
        lr, patience = DEFAULTS[self.task]
        self.lr = lr if self.lr is None else self.lr
        self.patience = patience if self.patience is None else self.patience
        self.labels = tuple(self.labels)


@dataclass
class Task:
    """What differs between classification and segmentation; the loop itself is shared."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    scheduler: Callable[[torch.optim.Optimizer], object]
    plateau: bool  # the scheduler steps on the validation loss
    evaluate: Callable[[nn.Module, DataLoader, torch.device], dict]


# --- losses and metrics ---------------------------------------------------------------------------


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the sigmoid outputs, averaged over the known (non-NaN) labels only."""
    known = ~torch.isnan(target)
    loss = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(target), reduction="none")
    return (loss * known).sum() / known.sum().clamp(min=1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """The protocol's soft Dice loss over the whole batch: ``1 − (2Σpt + 1) / (Σp + Σt + 1)``."""
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)


def dice_scores(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(pooled Dice over all pixels of all images, mean per-image Dice) of binary masks N×…; empty vs
    empty counts as 1."""
    pred, target = pred.reshape(len(pred), -1).astype(bool), target.reshape(len(target), -1).astype(bool)
    inter = (pred & target).sum(1).astype(float)
    sums = (pred.sum(1) + target.sum(1)).astype(float)
    pooled = 2 * inter.sum() / sums.sum() if sums.sum() else 1.0
    per_image = np.where(sums > 0, 2 * inter / np.maximum(sums, 1), 1.0)
    return float(pooled), float(per_image.mean()) if len(per_image) else math.nan


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid outputs and labels over a loader; 5-D batches (TenCrop) are averaged over the crops."""
    model.eval()
    scores, truth = [], []
    for x, y in loader:
        x = x.to(device)
        if x.ndim == 5:
            b, n = x.shape[:2]
            p = torch.sigmoid(model(x.flatten(0, 1))).view(b, n, -1).mean(1)
        else:
            p = torch.sigmoid(model(x))
        scores.append(p.float().cpu().numpy())
        truth.append(y.numpy())
    return np.concatenate(scores), np.concatenate(truth)


def _evaluate_classification(labels: Sequence[str]):
    def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
        scores, truth = predict_probabilities(model, loader, device)
        auc = per_class_auc(truth, scores, labels)
        finite = [v for v in auc.values() if not math.isnan(v)]
        return {
            "per_class_auc": {k: (None if math.isnan(v) else v) for k, v in auc.items()},
            "mean_auc": float(np.mean(finite)) if finite else None,
            "test_images": len(truth),
        }

    return evaluate


@torch.no_grad()
def _evaluate_segmentation(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    model.eval()
    preds, masks = [], []
    for x, m in loader:
        preds.append((torch.sigmoid(model(x.to(device))) > 0.5).cpu().numpy())
        masks.append(m.numpy() > 0.5)
    pooled, per_image = dice_scores(np.concatenate(preds), np.concatenate(masks))
    return {"dice": pooled, "dice_per_image": per_image, "test_images": sum(len(m) for m in masks)}


# --- models --------------------------------------------------------------------------------------


def build_model(cfg: FinetuneConfig) -> tuple[nn.Module, str, dict]:
    """The network to fine-tune, its architecture, and notes on how it was initialised."""
    random_init = cfg.source == "random"
    if cfg.task == "segmentation":
        if random_init:
            return UNet(cfg.arch, out_channels=1), cfg.arch, {"init": "random"}
        try:
            model = dira_zoo.load(cfg.source, head="unet", num_classes=1)
            return model, model.architecture, {"init": "encoder+decoder"}
        except WeightsError as exc:
            if DECODER_NAME not in str(exc):  # anything but "this source has no decoder"
                raise
        backbone = dira_zoo.load(cfg.source, head="backbone")  # the benchmark's own encoder-only init
        model = UNet(backbone.pretrained_cfg["architecture"], out_channels=1)
        model.encoder.load_state_dict(backbone.state_dict())
        return model, model.architecture, {"init": "encoder"}
    n = len(cfg.labels)
    if random_init:
        model = create_classifier(cfg.arch, n)
        arch = cfg.arch
    else:
        model = dira_zoo.load(cfg.source, num_classes=n)
        arch = model.pretrained_cfg["architecture"]
    keep_head = not random_init and label_names_for(model) == cfg.labels
    if not keep_head:  # the protocol's head init: N(0, 0.01), bias 0
        head = model.get_classifier()
        nn.init.normal_(head.weight, 0.0, 0.01)
        nn.init.zeros_(head.bias)
    return (
        model,
        arch,
        {"init": "random" if random_init else "pretrained", "head": "kept" if keep_head else "new"},
    )


def freeze_trunk(model: nn.Module) -> list[nn.Parameter]:
    """Linear probe: only the classifier trains; returns its parameters."""
    head = model.get_classifier()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    return list(head.parameters())


def _set_train_mode(model: nn.Module, linear_probe: bool) -> None:
    if linear_probe:  # BatchNorm statistics of the frozen trunk must not move either
        model.eval()
        model.get_classifier().train()
    else:
        model.train()


# --- the loop ------------------------------------------------------------------------------------


def run_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    linear_probe: bool = False,
    desc: str = "",
    progress: bool = True,
) -> float:
    """One pass; trains when an optimizer is given. Returns the mean loss per sample."""
    training = optimizer is not None
    if training:
        _set_train_mode(model, linear_probe)
    else:
        model.eval()
    total, count = 0.0, 0
    with torch.set_grad_enabled(training):
        for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += loss.item() * len(x)
            count += len(x)
    return total / max(count, 1)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _loaders(cfg: FinetuneConfig) -> tuple[dict[str, DataLoader], dict]:
    """train / val / test loaders and a summary of the data."""
    generator = torch.Generator().manual_seed(cfg.seed)

    def loader(dataset, shuffle: bool, batch: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch,
            shuffle=shuffle,
            num_workers=cfg.workers,
            generator=generator,
            persistent_workers=cfg.workers > 0,
        )

    if cfg.task == "segmentation":
        splits = segmentation_splits(cfg.data)
        keep = label_fraction(len(splits["train"][0]), cfg.label_fraction)
        images, masks = splits["train"]
        splits["train"] = ([images[i] for i in keep], [masks[i] for i in keep])
        sets = {s: SegmentationPairs(*splits[s], cfg.image_size, train=s == "train") for s in splits}
        test_batch = cfg.batch_size
    else:
        readers = {
            s: chestxray14(cfg.data, split=s, label_names=cfg.labels) for s in ("train", "val", "test")
        }
        readers["train"] = readers["train"].subset(label_fraction(len(readers["train"]), cfg.label_fraction))
        modes = {"train": "train", "val": "eval", "test": "tencrop" if cfg.tta == "tencrop" else "eval"}
        sets = {
            s: Classification(readers[s], cfg.image_size, modes[s], cfg.normalization, cfg.crop_scale)
            for s in readers
        }
        test_batch = max(1, cfg.batch_size // (10 if cfg.tta == "tencrop" else 1))
    for split, dataset in sets.items():
        if len(dataset) == 0:
            raise DatasetError(f"{cfg.data}: the {split} split is empty")
    loaders = {
        "train": loader(sets["train"], True, cfg.batch_size),
        "val": loader(sets["val"], False, cfg.batch_size),
        "test": loader(sets["test"], False, test_batch),
    }
    return loaders, {f"{s}_images": len(d) for s, d in sets.items()}


def _task(cfg: FinetuneConfig) -> Task:
    if cfg.task == "segmentation":
        return Task(
            dice_loss,
            lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.max_epochs),
            False,
            _evaluate_segmentation,
        )
    return Task(
        masked_bce,
        lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=5, threshold=1e-4
        ),
        True,
        _evaluate_classification(cfg.labels),
    )


@dataclass
class Fitted:
    """The outcome of :func:`fit`: the best weights (lowest validation loss) and when they were seen."""

    state: dict[str, torch.Tensor]
    val_loss: float
    epoch: int
    epochs_run: int


def fit(
    model: nn.Module, loaders: dict[str, DataLoader], task: Task, cfg: FinetuneConfig, device, out: Path
) -> Fitted:
    """Train with early stopping on the validation loss; logs ``log.csv`` and keeps ``best.safetensors``."""
    params = freeze_trunk(model) if cfg.linear_probe else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    scheduler = task.scheduler(optimizer)
    best = Fitted({}, math.inf, -1, 0)
    stale = 0
    with open(out / "log.csv", "w", newline="") as f:
        log = csv.writer(f)
        log.writerow(["epoch", "train_loss", "val_loss", "lr", "seconds"])
        for epoch in range(cfg.max_epochs):
            start, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            train_loss = run_epoch(
                model,
                loaders["train"],
                task.loss,
                device,
                optimizer,
                linear_probe=cfg.linear_probe,
                desc=f"epoch {epoch} train",
                progress=cfg.progress,
            )
            val_loss = run_epoch(
                model, loaders["val"], task.loss, device, desc=f"epoch {epoch} val", progress=cfg.progress
            )
            if task.plateau:
                scheduler.step(val_loss)
            else:
                scheduler.step()
            seconds = time.perf_counter() - start
            log.writerow([epoch, f"{train_loss:.6f}", f"{val_loss:.6f}", f"{lr:.3g}", f"{seconds:.1f}"])
            f.flush()
            best.epochs_run = epoch + 1
            if val_loss < best.val_loss:
                state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
                best = Fitted(state, val_loss, epoch, epoch + 1)
                stale = 0
                save_file(state, str(out / "best.safetensors"))
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    return best


@dataclass
class FinetuneResult:
    """A finished run: the best model (on the CPU, in eval mode) and what ``metrics.json`` holds."""

    model: nn.Module
    metrics: dict


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Run fine-tuning end to end: data, model, fit, test, export."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = _device(cfg.device)
    loaders, data_summary = _loaders(cfg)
    model, arch, init = build_model(cfg)
    model.to(device)
    task = _task(cfg)
    best = fit(model, loaders, task, cfg, device, out)
    model.load_state_dict(best.state)
    results = task.evaluate(model, loaders["test"], device)

    provenance = {
        "stage": "finetuned",
        "task": cfg.task,
        "source": cfg.source,
        "data": str(cfg.data),
        "epochs": best.epochs_run,
        "best_epoch": best.epoch,
        "label_fraction": cfg.label_fraction,
        "linear_probe": cfg.linear_probe,
        "protocol": "BenchmarkTransferLearning",
    }
    _export(model, arch, cfg, out / "model", provenance)
    metrics = {
        **provenance,
        **init,
        **data_summary,
        **results,
        "architecture": arch,
        "best_val_loss": best.val_loss,
        "label_names": list(cfg.labels) if cfg.task == "classification" else [],
        "tta": cfg.tta if cfg.task == "classification" else "none",
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return FinetuneResult(model, metrics)


def _export(model: nn.Module, arch: str, cfg: FinetuneConfig, folder: Path, provenance: dict) -> None:
    model.cpu().eval()
    if cfg.task == "segmentation":
        preprocess = Preprocess((3, cfg.image_size, cfg.image_size), mean=NO_NORM_MEAN, std=NO_NORM_STD)
        dira_zoo.export(
            model, folder, architecture=arch, preprocess=preprocess, dira=provenance, overwrite=True
        )
        return
    preprocess = eval_preprocess(cfg.image_size, cfg.normalization)
    dira_zoo.export(
        model,
        folder,
        architecture=arch,
        label_names=cfg.labels,
        preprocess=preprocess,
        dira=provenance,
        overwrite=True,
    )


# --- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="ChestX-ray14-layout folder (or images/ + masks/)")
    p.add_argument("--out", required=True, help="run folder (metrics.json, log.csv, model/)")
    p.add_argument("--source", default="random", help="registry name, hf-hub:…, folder, file, or random")
    p.add_argument("--task", default="classification", choices=TASKS)
    p.add_argument("--arch", default="resnet50", help="architecture for --source random")
    p.add_argument("--labels", help="comma-separated label names (default: the 14 ChestX-ray14 labels)")
    p.add_argument("--max-epochs", "--epochs", dest="max_epochs", type=int, default=1000)
    p.add_argument("--patience", type=int, help="early stopping (default 10; segmentation 20)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="Adam learning rate (default 2e-4; segmentation 1e-3)")
    p.add_argument(
        "--label-fraction", type=float, default=100.0, help="percent of training labels (1, 25, …)"
    )
    p.add_argument("--linear-probe", action="store_true", help="train the classifier head only")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--normalization", default="imagenet", choices=("imagenet", "none"))
    p.add_argument(
        "--crop-scale", type=float, default=0.08, help="smallest RandomResizedCrop area (protocol: 0.08)"
    )
    p.add_argument("--tta", default="tencrop", choices=("tencrop", "none"), help="test-time augmentation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=4)
    return p


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    values = {f.name: getattr(args, f.name) for f in fields(FinetuneConfig) if hasattr(args, f.name)}
    if args.labels:
        values["labels"] = tuple(s.strip() for s in args.labels.split(",") if s.strip())
    else:
        values.pop("labels")
    return FinetuneConfig(**values)


def _report(metrics: dict) -> str:
    if metrics["task"] == "segmentation":
        return f"test Dice {100 * metrics['dice']:.2f} (per image {100 * metrics['dice_per_image']:.2f})"
    rows = [
        f"  {name:<20} {'n/a' if auc is None else f'{auc:.4f}'}"
        for name, auc in metrics["per_class_auc"].items()
    ]
    mean = metrics["mean_auc"]
    return "\n".join(
        ["test ROC-AUC per class:", *rows, f"  {'mean':<20} {'n/a' if mean is None else f'{mean:.4f}'}"]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        metrics = finetune(config_from_args(args)).metrics
        print(_report(metrics))
        print(f"model exported to {Path(args.out) / 'model'}")
        return 0

    return run_guarded(run, "finetune")


if __name__ == "__main__":
    sys.exit(main())
