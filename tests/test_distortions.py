"""DiRA's distortions and the two-view pipeline: what each branch does, the mix, the target, the keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import AugmentConfig, DistortionConfig
from training.distortions import cutout, distort, outpaint, swap_patches
from training.views import EpochSampler, PretrainDataset, TwoViews, crop_box

from .pretrain_support import (
    MemoryImages,
    synthetic_image,
    torch_globals,  # noqa: F401 (autouse fixture)
)


def _image(size: int = 224) -> np.ndarray:
    # Strictly positive, so zeroed pixels are the ones a distortion removed.
    return 0.1 + 0.9 * synthetic_image(3, size)


def test_cutout_zeroes_blocks_of_official_size() -> None:
    image = _image()
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = cutout(image, rng)
        zero = out == 0
        assert zero.any() and zero.mean() < 0.9
        rows, cols = np.nonzero(zero)
        assert rows.min() >= 3 and cols.min() >= 3 and rows.max() <= 220 and cols.max() <= 220  # 3 px margins
        assert np.array_equal(out[~zero], image[~zero])  # nothing else changes


def test_outpaint_keeps_only_large_windows() -> None:
    image = _image()
    rng = np.random.default_rng(1)
    for _ in range(20):
        out = outpaint(image, rng)
        kept = out != 0
        share = kept.mean()
        assert (154 / 224) ** 2 * 0.99 <= share < 1.0  # at least one 154–174 px window survives
        assert not kept[:3].any() and not kept[:, :3].any()  # borders are outside every window
        assert np.array_equal(out[kept], image[kept])


def test_swap_changes_small_blocks_only() -> None:
    image = _image()
    out = swap_patches(image, np.random.default_rng(2))
    changed = out != image
    assert 0 < changed.mean() < 10 * 2 * 15 * 15 / 224**2 + 1e-9
    assert np.isin(out[changed], image).all()  # every new value comes from the original image


def test_a_swapped_pair_never_overlaps() -> None:
    # A pair of disjoint blocks is a pure exchange: the pixels are permuted, two equal areas change.
    # (The official overlap test let blocks overlap, which duplicates pixels instead.)
    image = _image(32)
    for seed in range(30):
        out = swap_patches(image, np.random.default_rng(seed), pairs=1)
        assert np.array_equal(np.sort(out.ravel()), np.sort(image.ravel()))
        assert (out != image).sum() % 2 == 0


def test_branch_mix_follows_the_probabilities() -> None:
    rng = np.random.default_rng(3)
    image = _image(32)
    counts: dict[str, int] = {}
    n = 2000
    for _ in range(n):
        branch = distort(image, rng, DistortionConfig())[1]
        counts[branch] = counts.get(branch, 0) + 1
    expected = {"cutout": 0.30, "outpaint": 0.05, "swap": 0.30, "none": 0.35}
    for branch, p in expected.items():
        assert abs(counts[branch] / n - p) < 0.04, (branch, counts)


def test_sizes_scale_with_the_crop() -> None:
    rng = np.random.default_rng(4)
    image = _image(32)
    for _ in range(50):
        out = cutout(image, rng)
        assert out.shape == (32, 32) and (out == 0).mean() < 0.95


def test_crop_box_respects_scale_and_image() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        top, left, h, w = crop_box(rng, 100, 80, (0.2, 1.0))
        assert top >= 0 and top + h <= 100 and left >= 0 and left + w <= 80
        assert 0.2 * 8000 * 0.9 <= h * w <= 8000


def _plain(**changes) -> AugmentConfig:
    """No jitter, blur or distortion: views are just crops (and flips)."""
    cfg = AugmentConfig(jitter_p=0.0, blur_p=0.0, distortion=DistortionConfig(0.0, 0.0, 0.0))
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def test_views_shapes_and_range() -> None:
    views = TwoViews(AugmentConfig(), 32, restore=True)
    v1, v2, target = views(synthetic_image(0, 64), np.random.default_rng(0))
    for t in (v1, v2, target):
        assert t.shape == (1, 32, 32) and t.dtype == torch.float32
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


@pytest.mark.parametrize("flip_target", [True, False])
def test_target_is_the_first_crop_flipped_or_not(flip_target: bool) -> None:
    views = TwoViews(_plain(flip_p=1.0, flip_target=flip_target), 32, restore=True)
    v1, _, target = views(synthetic_image(1, 64), np.random.default_rng(1))
    expected = v1 if flip_target else v1.flip(-1)  # the official quirk: the target is never flipped
    assert torch.equal(target, expected)


def test_restoration_target_is_undistorted() -> None:
    cfg = _plain(flip_p=0.0, distortion=DistortionConfig(cutout=1.0, outpaint=0.0, swap=0.0))
    v1, v2, target = TwoViews(cfg, 32, restore=True)(0.1 + synthetic_image(2, 64), np.random.default_rng(2))
    assert (v1 == 0).any() and (v2 == 0).any() and not (target == 0).any()
    assert (
        not TwoViews(cfg, 32, restore=False)(0.1 + synthetic_image(2, 64), np.random.default_rng(2))[0]
        .eq(0)
        .any()
    )


def test_samples_are_a_function_of_their_key() -> None:
    dataset = PretrainDataset(MemoryImages(4), TwoViews(AugmentConfig(), 32, restore=True), seed=7)
    a, b = dataset[(0, 1, 2)], dataset[(0, 1, 2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(dataset[(0, 2, 2)][0], a[0])  # another epoch, other views


def test_sampler_shards_and_resumes() -> None:
    shards = [list(EpochSampler(10, 2, seed=0, rank=r, world=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4  # 10 images, global batch 4: 2 batches each, tail dropped
    assert not {k[2] for k in shards[0]} & {k[2] for k in shards[1]}
    sampler = EpochSampler(10, 2, seed=0)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=2)
    assert list(sampler) == full[4:] and len(sampler) == len(full) - 4
    sampler.set_epoch(4)
    assert list(sampler) != full
    val = EpochSampler(10, 2, seed=0, train=False)
    val.set_epoch(5)
    assert [k[2] for k in val] == list(range(10))
