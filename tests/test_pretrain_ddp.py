"""DDP: two gloo processes through torchrun train a few dira steps and end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from training.checkpoint import load

from .conftest import REPO_ROOT
from .pretrain_support import TINY, write_png_folder


def test_two_processes_end_with_identical_weights(tmp_path) -> None:
    data = write_png_folder(tmp_path / "images", 24)  # 16 train (2 steps of global batch 8), 8 val
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "training.pretrain", "--save-rank-weights", *TINY, "optim.batch_size=8"]
    command += [f"data.root={data}", "data.format=folder", "data.val_fraction=0.34", f"out_dir={run}"]
    command += ["mode=dira", "max_steps=3", "device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]

    ranks = [load(run / f"rank{r}.pt")["model"] for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    different = [k for k in ranks[0] if not torch.equal(ranks[0][k], ranks[1][k])]
    assert not different, different[:5]
    last = load(run / "last.pt")
    assert last["step"] == 3 and last["world_size"] == 2
    assert all(torch.equal(last["model"][k], ranks[0][k]) for k in ranks[0])
    start = load(run / "best.pt")["model"]  # written after step 2: training moved the weights since
    assert not torch.equal(
        start["generator.unet.encoder.conv1.weight"], ranks[0]["generator.unet.encoder.conv1.weight"]
    )
