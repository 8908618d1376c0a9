"""From the ``data`` section of a config to DataLoaders of DiRA samples.

Images come from :mod:`training.datasets` (ChestX-ray14 layout or any image folder, decoded by
``dira_zoo.io``) or, when ``data.cache_dir`` is set, from the memmap caches of :mod:`training.cache`.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from .cache import cache_path, open_cached
from .config import ConfigError, DataConfig, RunConfig
from .views import EpochSampler, PretrainDataset, TwoViews


def open_sources(cfg: DataConfig) -> dict[str, object]:
    """``{"train": reader, "val": reader}`` (no "val" when validation is off) decoding image files."""
    from . import datasets

    if not cfg.root:
        raise ConfigError("data.root is not set: point it at the ChestX-ray14 folder or an image folder")
    if cfg.format == "chestxray14":
        readers = {"train": datasets.chestxray14(cfg.root, split=cfg.train_split)}
        if cfg.val_split:
            readers["val"] = datasets.chestxray14(cfg.root, split=cfg.val_split)
        return readers
    if cfg.format == "folder":
        return split_folder(datasets.image_folder(cfg.root), cfg.val_fraction)
    raise ConfigError(f"data.format must be chestxray14 or folder, not {cfg.format!r}")


def split_folder(reader, val_fraction: float) -> dict[str, object]:
    """A fixed share of a folder for validation, chosen by a constant seed (the same for every run)."""
    n_val = round(len(reader) * val_fraction)
    if n_val == 0:
        return {"train": reader}
    order = np.random.default_rng(0).permutation(len(reader))
    return {"train": reader.subset(np.sort(order[n_val:])), "val": reader.subset(np.sort(order[:n_val]))}


def open_readers(cfg: DataConfig) -> dict[str, object]:
    """The readers training uses: the caches when ``data.cache_dir`` is set, else the files.

    A cached validation split is used when the config asks for validation and ``val.npy`` was built.
    """
    if not cfg.cache_dir:
        return open_sources(cfg)
    readers = {"train": open_cached(cfg, "train")}
    wants_val = cfg.val_split if cfg.format == "chestxray14" else cfg.val_fraction > 0
    if wants_val and cache_path(cfg, "val").is_file():
        readers["val"] = open_cached(cfg, "val")
    return readers


def _worker_init(_: int) -> None:
    # Workers each decode one sample at a time: let the processes, not threads, share the cores.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def make_loader(
    reader,
    cfg: RunConfig,
    *,
    train: bool,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
) -> tuple[DataLoader, EpochSampler]:
    """A loader of ``(view1, view2, target)`` batches and its resumable sampler."""
    views = TwoViews(cfg.augment, cfg.data.image_size, restore=cfg.mode != "di")
    dataset = PretrainDataset(reader, views, cfg.seed)
    sampler = EpochSampler(len(dataset), batch_size, cfg.seed, rank=rank, world=world, train=train)
    if sampler.batches == 0:
        what = "training" if train else "validation"
        raise ConfigError(
            f"the {what} set has {len(dataset)} images, fewer than one global batch ({batch_size * world})"
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.data.workers,
        pin_memory=pin_memory,
        drop_last=True,
        worker_init_fn=_worker_init,
        persistent_workers=False,
    )
    return loader, sampler
