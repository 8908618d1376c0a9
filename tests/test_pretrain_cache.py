"""The memmap fast path: build once from an image folder, then train without decoding any PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import cache
from training.cache import CachedImages, CacheError
from training.config import load_config
from training.data import make_loader, open_readers, open_sources
from training.datasets import image_folder
from training.trainer import Trainer

from .conftest import REPO_ROOT
from .pretrain_support import (
    TINY,
    torch_globals,  # noqa: F401 (autouse fixture)
    write_png_folder,
)

TINY_CPU = str(REPO_ROOT / "training/configs/tiny_cpu.yaml")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    images = write_png_folder(root / "images", 20)
    overrides = [*TINY, f"data.root={images}", f"data.cache_dir={root / 'cache'}", "data.cache_size=48"]
    overrides += ["data.val_fraction=0.2", f"out_dir={root / 'run'}"]
    assert cache.main(["--config", TINY_CPU, *overrides]) == 0
    return load_config(TINY_CPU, overrides)


def test_cache_holds_every_image_resized_as_uint8(built) -> None:
    train = CachedImages(cache.cache_path(built.data, "train"))
    val = CachedImages(cache.cache_path(built.data, "val"))
    assert (len(train), len(val)) == (16, 4)
    assert train.array.dtype == np.uint8 and train.array.shape == (16, 48, 48)
    assert isinstance(train.array, np.memmap)
    source = image_folder(built.data.root)
    by_path = {p: i for i, p in enumerate(source.paths)}
    for i in (0, 7, 15):
        decoded = source[by_path[train.paths[i]]][0]
        assert np.array_equal(train[i][0], np.round(decoded * 255).astype(np.uint8))  # 48² PNGs: no resize
    assert train.labels.shape == (16, 0)


def test_cached_views_match_the_decoded_ones(built) -> None:
    # Same keys, same crops: the memmap path only differs by uint8 rounding inside the resize.
    cached = open_readers(built.data)["train"]
    decoded = open_sources(built.data)["train"]
    assert [str(p) for p in cached.paths] == [str(p) for p in decoded.paths]
    batches = [next(iter(make_loader(r, built, train=True, batch_size=4)[0])) for r in (cached, decoded)]
    for a, b in zip(*batches, strict=True):
        assert torch.allclose(a, b, atol=1.5 / 255)


def test_training_reads_the_cache(built, tmp_path) -> None:
    cfg = load_config(TINY_CPU, [*TINY, f"data.cache_dir={built.data.cache_dir}", "data.cache_size=48"])
    cfg.data.root = "/nonexistent"  # nothing is decoded from files
    cfg.out_dir, cfg.max_steps = str(tmp_path / "run"), 2
    assert Trainer(cfg).fit() == "stopped"


def test_missing_or_mismatched_cache_is_a_clear_error(built, tmp_path) -> None:
    cfg = load_config(TINY_CPU, [f"data.cache_dir={tmp_path}"])
    with pytest.raises(CacheError, match="python -m training.cache"):
        open_readers(cfg.data)
    cfg = load_config(TINY_CPU, [f"data.cache_dir={built.data.cache_dir}", "data.cache_size=64"])
    with pytest.raises(CacheError, match="cached at 48"):
        open_readers(cfg.data)
