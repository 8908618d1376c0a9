"""Resuming: an interrupted run continues bit-for-bit; SIGTERM saves and exits cleanly; staged init."""

from __future__ import annotations

import os
import signal
import threading
import time

import torch

from training import pretrain
from training.checkpoint import LAST, load
from training.losslog import read
from training.trainer import Trainer

from .conftest import REPO_ROOT
from .pretrain_support import (
    MemoryImages,
    tiny_config,
    torch_globals,  # noqa: F401 (autouse fixture)
    write_png_folder,
)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path) -> None:
    # 12 images, batch 4: 3 steps per epoch; stopping at step 2 interrupts the first epoch mid-way,
    # and the run then crosses an epoch end (schedule step, validation, best.pt) before finishing.
    readers = {"train": MemoryImages(12), "val": MemoryImages(4, seed=1)}
    overrides = ["mode=dira", "max_steps=5"]
    whole = Trainer(tiny_config(tmp_path / "whole", *overrides), readers)
    assert whole.fit() == "stopped"

    Trainer(tiny_config(tmp_path / "split", "mode=dira", "max_steps=2"), readers).fit()
    resumed = Trainer(tiny_config(tmp_path / "split", *overrides), readers, resume=True)
    assert (resumed.step, resumed.epoch, resumed.epoch_step) == (2, 0, 2)
    resumed.fit()

    assert resumed.step == whole.step == 5
    assert _same_state(whole.model.state_dict(), resumed.model.state_dict())  # incl. queue, key encoder
    assert _same_state(whole.disc.state_dict(), resumed.disc.state_dict())
    assert whole.opt_g.param_groups[0]["lr"] == resumed.opt_g.param_groups[0]["lr"] < 0.03  # cosine stepped
    log = read(tmp_path / "split" / "losses.csv")
    assert [r["step"] for r in log if r["split"] == "train"] == ["1", "2", "3", "4", "5"]
    assert [r["split"] for r in log].count("val") == 1
    assert (tmp_path / "split" / "best.pt").is_file()


def test_dira_stage_starts_from_the_dir_run(tmp_path) -> None:
    readers = {"train": MemoryImages(8)}
    first = Trainer(tiny_config(tmp_path / "dir", "mode=dir", "max_steps=2"), readers)
    first.fit()
    second = Trainer(tiny_config(tmp_path / "dira", "mode=dira", f"init_from={tmp_path / 'dir'}"), readers)
    assert _same_state(first.model.state_dict(), second.model.state_dict())  # generator, key encoder, queue
    assert second.step == 0 and second.opt_g.param_groups[0]["lr"] == 0.03  # fresh schedule, fresh D


def test_sigterm_saves_and_resume_finishes(tmp_path, capsys) -> None:
    # The CLI in this process (a subprocess would spend most of the test importing torch); a watcher
    # thread sends the real SIGTERM once training has logged a step.
    data = write_png_folder(tmp_path / "images", 40)
    run = tmp_path / "run"
    args = [
        "--config",
        str(REPO_ROOT / "training/configs/tiny_cpu.yaml"),
        f"data.root={data}",
        f"out_dir={run}",
    ]
    args += ["data.image_size=32", "data.workers=0", "optim.batch_size=4", "method.moco.queue_size=16"]
    log = run / "losses.csv"

    def terminate_after_first_step() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.is_file() and len(read(log)) >= 1):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=terminate_after_first_step, daemon=True)
    watcher.start()
    assert pretrain.main(args) == 0
    watcher.join()
    stopped = load(run / LAST)
    assert (
        1 <= stopped["step"] < 36 and "stopped" in capsys.readouterr().err
    )  # 36 training images: 9 steps × 4

    target = stopped["step"] + 2
    assert pretrain.main(["--resume", str(run), f"max_steps={target}"]) == 0  # config from the checkpoint
    assert load(run / LAST)["step"] == target
    assert [int(r["step"]) for r in read(log) if r["split"] == "train"] == list(range(1, target + 1))


def test_resume_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys) -> None:
    assert pretrain.main(["--resume", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "no checkpoint there" in err
