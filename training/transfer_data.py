"""Data for transfer learning: the BenchmarkTransferLearning transforms, label fractions, mask pairs.

Classification (docs: dira_method.md §5.1): train ``RandomResizedCrop(S)`` → horizontal flip →
``RandomRotation(7)``; validation ``Resize(R, R)`` → ``CenterCrop(S)`` (R = S / 0.875, 256 for 224);
test the same resize then ``TenCrop(S)``. Segmentation: ``Resize(S, S)`` (nearest for masks), values in
[0, 1], light photometric and crop augmentation. Images arrive as :mod:`training.datasets` gives them
(grey float32 in [0, 1]); the network sees 3 channels.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from dira_zoo.io import read_image
from dira_zoo.transforms import IMAGENET_MEAN, IMAGENET_STD, NO_NORM_MEAN, NO_NORM_STD, Preprocess

from .datasets import DatasetError, XrayDataset, chestxray14, image_folder, patient_split

#: The protocol's fixed shuffling seed for label fractions (``random.Random(99)``).
FRACTION_SEED = 99
#: Validation/test resize ratio of the protocol: Resize(256) then crop 224.
CROP_PCT = 0.875
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "none": (NO_NORM_MEAN, NO_NORM_STD)}


def label_fraction(n: int, percent: float) -> list[int]:
    """Indices kept with ``percent`` % of the labels: the first ``int(n * p / 100)`` after the protocol's
    ``random.Random(99).shuffle`` of the training list (at least one)."""
    if not 0 < percent <= 100:
        raise DatasetError(f"label fraction must be in (0, 100] percent, not {percent}")
    order = list(range(n))
    if percent < 100:
        random.Random(FRACTION_SEED).shuffle(order)
    return order[: max(1, int(n * percent / 100.0))]


def eval_preprocess(
    image_size: int, normalization: str = "imagenet", crop_pct: float = CROP_PCT
) -> Preprocess:
    """Validation preprocessing (resize, centre crop, normalise): also what the export records."""
    mean, std = NORMALIZATIONS[normalization]
    return Preprocess(input_size=(3, image_size, image_size), mean=mean, std=std, crop_pct=crop_pct)


class Classification:
    """``reader[i]`` → ``(3×S×S tensor, labels)``; ``mode``: train | eval | tencrop (10×3×S×S)."""

    def __init__(
        self,
        reader: XrayDataset,
        image_size: int,
        mode: str,
        normalization: str = "imagenet",
        crop_scale: float = 0.08,
    ):
        if mode not in ("train", "eval", "tencrop"):
            raise ValueError(f"mode must be train, eval or tencrop, not {mode!r}")
        self.reader, self.mode, self.size = reader, mode, image_size
        self.eval = eval_preprocess(image_size, normalization)
        mean, std = NORMALIZATIONS[normalization]
        # TenCrop: resize the whole image to R×R (and normalise) once, then take the ten crops
        self.resized = Preprocess((3, *self.eval.resize_size), mean=mean, std=std, crop_pct=1.0)
        self.augment = v2.Compose(
            [
                v2.RandomResizedCrop((image_size, image_size), scale=(crop_scale, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(7),
            ]
        )
        self.normalize = v2.Normalize(mean, std)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        grey, labels = self.reader[index]
        labels = torch.as_tensor(labels, dtype=torch.float32)
        if self.mode == "eval":
            return self.eval(grey), labels
        if self.mode == "tencrop":
            crops = v2.functional.ten_crop(self.resized(grey), [self.size, self.size])
            return torch.stack(crops), labels
        x = self.augment(torch.from_numpy(np.ascontiguousarray(grey))[None])
        return self.normalize(x.expand(3, -1, -1)), labels


class SegmentationPairs:
    """Images with same-named masks: ``[i]`` → ``(3×S×S in [0, 1], 1×S×S mask of 0/1)``."""

    def __init__(self, images: Sequence[Path], masks: Sequence[Path], image_size: int, train: bool) -> None:
        self.images, self.masks = list(images), list(masks)
        size = (image_size, image_size)
        steps: list = [v2.Resize(size, antialias=True)]
        if train:
            steps += [
                v2.RandomApply([v2.RandomResizedCrop(size, scale=(0.48, 1.0), ratio=(1.0, 1.0))], p=0.25),
                v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2)], p=0.3),
            ]
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(read_image(self.images[index]).pixels)[None]
        mask = read_image(self.masks[index]).pixels > 0
        if mask.shape != image.shape[1:]:
            raise DatasetError(
                f"{self.masks[index]}: mask is {mask.shape}, its image {tuple(image.shape[1:])}"
            )
        x, m = self.transform(image, tv_tensors.Mask(torch.from_numpy(mask)[None].float()))
        return x.clamp(0, 1).expand(3, -1, -1), m.as_subclass(torch.Tensor)


def segmentation_splits(root: str | Path) -> dict[str, tuple[list[Path], list[Path]]]:
    """``{split: (images, masks)}`` for train/val/test.

    Either ``root/{train,val,test}/{images,masks}`` (a missing val is a patient-agnostic 13 % of train),
    or one ChestX-ray14-layout folder with ``masks/`` beside ``images/`` (e.g. ``training.phantom
    --masks``), split by its lists as :func:`training.datasets.chestxray14` does.
    """
    root = Path(root)
    if (root / "train" / "images").is_dir():
        out = {s: _folder_pairs(root / s) for s in ("train", "val", "test") if (root / s / "images").is_dir()}
        if "test" not in out:
            raise DatasetError(f"{root}: segmentation needs test/images and test/masks beside train/")
        if "val" not in out:
            images, masks = out["train"]
            train, val = patient_split(np.arange(len(images)))
            out["train"] = ([images[i] for i in train], [masks[i] for i in train])
            out["val"] = ([images[i] for i in val], [masks[i] for i in val])
        return out
    if not (root / "masks").is_dir():
        raise DatasetError(f"{root}: no masks/ folder (nor train/, val/, test/ with images/ and masks/)")
    out = {}
    for split in ("train", "val", "test"):
        paths = chestxray14(root, split=split, label_names=()).paths
        out[split] = (paths, [_mask_for(root / "masks", p) for p in paths])
    return out


def _folder_pairs(folder: Path) -> tuple[list[Path], list[Path]]:
    images = image_folder(folder / "images").paths
    return images, [_mask_for(folder / "masks", p) for p in images]


def _mask_for(masks: Path, image: Path) -> Path:
    for candidate in (masks / image.name, masks / f"{image.stem}.png"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{image}: no mask {masks / image.name}")
