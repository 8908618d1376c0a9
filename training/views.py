"""The two-view + target pipeline of DiRA (§3): what one training sample is made of.

Per image: two random resized crops; on each, colour jitter, blur and flip; in ``dir``/``dira`` the
restorative distortion on both views. The restoration target is the first crop before jitter, blur
and distortion (flipped with it unless ``flip_target`` is off, the official quirk).

Grey images stay one channel here; the trainer repeats them to the three identical channels the
network takes (a third of the memory through the DataLoader). On a grey image colour jitter's
saturation and hue are no-ops, so only brightness and contrast are drawn. Blur σ is scaled with the
crop side, like the distortions (exact at 224²).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .config import AugmentConfig
from .distortions import REFERENCE_SIDE, distort

TRAIN_STREAM, VAL_STREAM = 0, 1


def crop_box(
    rng: np.random.Generator, height: int, width: int, scale: tuple[float, float], ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box ``(top, left, h, w)``: area share in ``scale``, aspect in ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return (
                int(rng.integers(0, height - h, endpoint=True)),
                int(rng.integers(0, width - w, endpoint=True)),
                h,
                w,
            )
    # Fallback, as torchvision: the central crop with the aspect clamped into ``ratio``.
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop and resize to ``size``² as float32 in [0, 1] (area filter when shrinking)."""
    top, left, h, w = box
    crop = image[top : top + h, left : left + w]
    interpolation = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    out = cv2.resize(crop, (size, size), interpolation=interpolation)
    if out.dtype == np.uint8:
        return out.astype(np.float32) * (1.0 / 255.0)
    return out.astype(np.float32, copy=False)


class TwoViews:
    """``grey image → (view1, view2, target)``, each a 1×S×S float tensor; ``restore`` adds distortions."""

    def __init__(self, cfg: AugmentConfig, size: int, restore: bool) -> None:
        self.cfg = cfg
        self.size = size
        self.restore = restore

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        height, width = image.shape
        crops = [
            resized_crop(image, crop_box(rng, height, width, self.cfg.crop_scale), self.size)
            for _ in range(2)
        ]
        views, flips = zip(*(self._augment(crop, rng) for crop in crops), strict=True)
        target = crops[0][:, ::-1] if flips[0] and self.cfg.flip_target else crops[0]
        if self.restore:
            views = tuple(distort(v, rng, self.cfg.distortion)[0] for v in views)
        return tuple(torch.from_numpy(np.ascontiguousarray(a))[None] for a in (*views, target))

    def _augment(self, crop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        cfg = self.cfg
        x = crop
        if rng.random() < cfg.jitter_p:
            ops = [self._brightness, self._contrast]
            for i in rng.permutation(len(ops)):
                x = ops[i](x, rng)
        if rng.random() < cfg.blur_p:
            sigma = rng.uniform(*cfg.blur_sigma) * self.size / REFERENCE_SIDE
            x = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
        flip = bool(rng.random() < cfg.flip_p)
        if flip:
            x = x[:, ::-1]
        return x, flip

    def _brightness(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b = self.cfg.brightness
        return np.clip(x * rng.uniform(1 - b, 1 + b), 0.0, 1.0)

    def _contrast(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg.contrast
        mean = float(x.mean())
        return np.clip((x - mean) * rng.uniform(1 - c, 1 + c) + mean, 0.0, 1.0)


class PretrainDataset(Dataset):
    """Views of a reader's images; a key is ``(stream, epoch, index)`` and seeds that sample's randomness.

    Seeding per sample (not per worker) makes every batch a pure function of (seed, epoch, index), so
    the worker count does not matter and a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, reader, views: TwoViews, seed: int) -> None:
        self.reader = reader
        self.views = views
        self.seed = seed

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
        stream, epoch, index = key
        rng = np.random.default_rng([self.seed, stream, epoch, index])
        image = self.reader[index][0]
        return self.views(np.asarray(image), rng)


class EpochSampler(Sampler):
    """This process's share of an epoch (shuffled per epoch when ``train``), in whole batches from ``start``.

    Like ``DistributedSampler(drop_last=True)`` but resumable mid-epoch and yielding the keys
    :class:`PretrainDataset` wants. Every process drops the same tail so all see equal batch counts.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, *, rank: int = 0, world: int = 1, train: bool = True
    ) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world, self.train = rank, world, train
        self.epoch, self.start = 0, 0

    @property
    def batches(self) -> int:
        """Batches per epoch for each process."""
        return self.size // (self.batch_size * self.world)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        if self.train:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            stream, epoch = TRAIN_STREAM, self.epoch
        else:  # validation: a fixed order and the same views every epoch, so epochs compare fairly
            order, stream, epoch = torch.arange(self.size), VAL_STREAM, 0
        order = order[: self.batches * self.batch_size * self.world][self.rank :: self.world]
        for index in order[self.start * self.batch_size :].tolist():
            yield stream, epoch, index

    def __len__(self) -> int:
        return (self.batches - self.start) * self.batch_size
