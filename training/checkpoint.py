"""Training-state files: atomic writes, pickle-free loading, RNG states and the code version.

A checkpoint is our own ``torch.save`` of tensors and plain containers only (config as a dict, RNG
states as tensors), so it loads with ``torch.load(weights_only=True)``. The zoo never reads these
files; ``training.export`` turns a run into the safetensors export folder.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dira_zoo.errors import DiraZooError

LAST, BEST = "last.pt", "best.pt"


class CheckpointError(DiraZooError):
    """A run directory or checkpoint that cannot be used."""


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise CheckpointError(
            f"{path}: not a readable training checkpoint ({exc.__class__.__name__})"
        ) from None


def rng_state() -> dict[str, Any]:
    """Every generator a step may draw from, as tensors and plain values."""
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def code_version() -> str:
    """``dira-zoo <version>`` plus the git commit (``+dirty`` with local changes) when run from a clone."""
    import dira_zoo

    version = f"dira-zoo {dira_zoo.__version__}"
    root = Path(__file__).resolve().parents[1]
    try:
        commit = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return version
    return f"{version} ({commit}{'+dirty' if dirty else ''})"


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10)
    return out.stdout.strip()
