"""The fast data path: decode a data set once into a memory-mapped ``uint8`` array, read it per step.

``python -m training.cache --config CFG [overrides]`` writes ``<data.cache_dir>/{train,val}.npy``
(N × S × S ``uint8``, S = ``data.cache_size``, each image resized whole to S², as the zoo's
preprocessing does) plus a ``.json`` sidecar naming the sources. Training then opens the ``.npy``
files with ``mmap_mode="r"``: no PNG is decoded per step, and DataLoader workers share the pages.
Keep S comfortably above the crop size (512 for 224² crops): random crops cover 20–100 % of the
area, so a small cache would blur the smaller crops.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dira_zoo.cli import run_guarded
from dira_zoo.errors import DiraZooError
from dira_zoo.transforms import Preprocess

from .config import DataConfig, load_config


class CacheError(DiraZooError):
    """A memmap cache that is missing or does not match the configuration."""


class CachedImages:
    """A reader over a cache file: ``[i] -> (uint8 S×S image, labels)``, opened lazily per process.

    Opening lazily matters: a DataLoader worker then maps the file itself instead of receiving a
    pickled copy of the whole array.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path.with_suffix(".json")
        if not self.path.is_file() or not meta_path.is_file():
            raise CacheError(
                f"{self.path}: no cache there; build it with `python -m training.cache --config ...`"
            )
        self.meta = json.loads(meta_path.read_text())
        self.paths = [Path(p) for p in self.meta["paths"]]
        self.label_names = tuple(self.meta["label_names"])
        labels_path = _labels_path(self.path)
        self.labels = (
            np.load(labels_path, allow_pickle=False)
            if labels_path.is_file()
            else np.full((len(self), 0), np.nan, np.float32)
        )
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._array

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def __len__(self) -> int:
        return int(self.meta["count"])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.array[index]), self.labels[index]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}


class _Resized(Dataset):
    def __init__(self, reader, size: int) -> None:
        self.reader = reader
        self.preprocess = Preprocess(input_size=(1, size, size), mean=(0.0,), std=(1.0,))

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> torch.Tensor:
        grey = self.reader[index][0]
        return (self.preprocess(grey)[0] * 255.0).round_().to(torch.uint8)


def build(
    reader, out: str | Path, size: int, *, workers: int = 4, source: dict | None = None
) -> CachedImages:
    """Decode every image of ``reader`` into ``out`` (``.npy``) at ``size``²; written atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npy")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(reader), size, size))
    loader = DataLoader(_Resized(reader, size), batch_size=32, num_workers=workers)
    start = 0
    for batch in tqdm(loader, desc=f"caching {out.name}", unit="batch"):
        array[start : start + len(batch)] = batch.numpy()
        start += len(batch)
    array.flush()
    del array
    labels = getattr(reader, "labels", None)
    if labels is not None:
        np.save(_labels_path(out), np.asarray(labels, dtype=np.float32), allow_pickle=False)
    meta = {
        "count": len(reader),
        "size": size,
        **(source or {}),
        "paths": [str(p) for p in getattr(reader, "paths", [])],
        "label_names": list(getattr(reader, "label_names", [])),
    }
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return CachedImages(out)


def _labels_path(path: Path) -> Path:
    return path.with_suffix(".labels.npy")


def cache_path(cfg: DataConfig, split: str) -> Path:
    return Path(cfg.cache_dir) / f"{split}.npy"


def open_cached(cfg: DataConfig, split: str) -> CachedImages:
    """The cache of ``split`` ("train"/"val"), checked against the config's size."""
    cached = CachedImages(cache_path(cfg, split))
    if cached.size != cfg.cache_size:
        raise CacheError(f"{cached.path}: cached at {cached.size}² but data.cache_size is {cfg.cache_size}")
    return cached


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cache", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="run config YAML (its data section is used)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    args = parser.parse_args(argv)

    def run() -> None:
        from .data import open_sources

        data = load_config(args.config, args.overrides).data
        if not data.cache_dir:
            raise CacheError("set data.cache_dir (in the config or as data.cache_dir=PATH) to build a cache")
        for split, reader in open_sources(data).items():
            source = {"format": data.format, "root": data.root, "split": split}
            cached = build(
                reader, cache_path(data, split), data.cache_size, workers=data.workers, source=source
            )
            print(f"{cached.path}: {len(cached)} images at {cached.size}²")

    return run_guarded(run, "training.cache")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
