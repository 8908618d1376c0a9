"""Helpers shared by the pretraining tests: tiny configs and tiny synthetic images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training.config import RunConfig, load_config

#: Small enough for a few CPU steps per test: ResNet-18 U-Net, 32² crops, batch 4, small heads.
TINY = [
    "model.architecture=resnet18",
    "data.image_size=32",
    "data.workers=0",
    "optim.batch_size=4",
    "optim.epochs=2",
    "method.moco.queue_size=16",
    "method.moco.hidden_dim=64",
    "method.moco.dim=32",
    "method.barlowtwins.projector=[64,64]",
    "method.simsiam.dim=64",
    "method.simsiam.pred_dim=16",
]


@pytest.fixture(autouse=True)
def torch_globals():
    """One thread per test (CI shares two cores), and the process-wide determinism switch that the
    Trainer turns on is put back afterwards so other tests run as they would alone."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def tiny_config(out_dir: Path, *overrides: str) -> RunConfig:
    return load_config(None, [*TINY, f"out_dir={out_dir}", *overrides])


def synthetic_image(seed: int, size: int = 48) -> np.ndarray:
    """A smooth grey image with some structure (restoration has something to learn), float32 [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    image = 0.5 + 0.3 * np.sin(6 * xx * rng.uniform(1, 3)) * np.cos(4 * yy * rng.uniform(1, 2))
    image += 0.05 * rng.standard_normal((size, size))
    return np.clip(image, 0, 1).astype(np.float32)


class MemoryImages:
    """An in-memory reader with the training.datasets contract: ``[i] -> (grey float32, labels)``."""

    def __init__(self, count: int, seed: int = 0, size: int = 48) -> None:
        self.images = [synthetic_image(seed * 1000 + i, size) for i in range(count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], np.zeros(0, np.float32)


def write_png_folder(folder: Path, count: int, size: int = 48) -> Path:
    """``count`` 8-bit PNGs of :func:`synthetic_image` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(
            str(folder / f"img_{i:03d}.png"), np.round(synthetic_image(i, size) * 255).astype(np.uint8)
        )
    return folder
