"""A tiny end-to-end run of the phantom ablation: phantoms → dir pretraining → fine-tuning → scores."""

from __future__ import annotations

import json
import math

import pytest
import torch

from training.experiments.phantom_ablation import (
    CONFIGS,
    AblationConfig,
    markdown_table,
    summarize,
)
from training.experiments.phantom_ablation import run as run_ablation
from training.experiments.pipeline import FinetuneSetup, PhantomSet, PretrainSetup, mean_std

TINY = AblationConfig(
    name="tiny",
    phantoms=PhantomSet(n=36, size=64, val_fraction=0.15, test_fraction=0.3),
    arch="resnet10t",
    pretrain=PretrainSetup(
        arch="resnet10t", image_size=32, batch_size=4, epochs=1, queue_size=16, hidden_dim=32, dim=16
    ),
    finetune=FinetuneSetup(image_size=32, batch_size=8, epochs={100.0: 1}),
    inits=("dir",),
    fractions=(100.0,),
    seeds=(0,),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ablation")
    return out, run_ablation(TINY, out, progress=False)


def test_tiny_ablation_produces_a_table_of_real_numbers(tiny_run):
    out, summary = tiny_run
    (row,) = summary["rows"]
    assert (row["init"], row["fraction"], row["seeds"]) == ("dir", 100.0, 1)
    assert 0.0 <= row["mean_auc"] <= 1.0
    assert 0.0 <= row["iobb_acc_0.25"] <= 1.0 and 0.0 <= row["pointing_game"] <= 1.0
    (cell,) = summary["cells"]
    assert cell["boxes"] > 0  # the held-out split carries ground-truth boxes that were scored
    table = (out / "table.md").read_text()
    assert "| dir | 100% | 1 |" in table and "±" in table
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(summary["rows"]))
    # the pretraining stage was exported in the zoo format and fine-tuning started from it
    assert (out / "pretrain" / "dir" / "export" / "model.safetensors").is_file()
    metrics = json.loads((out / "finetune" / "dir_100pct_seed0" / "metrics.json").read_text())
    assert metrics["init"] == "pretrained" and metrics["source"].endswith("export")


def test_rerun_reuses_every_cached_cell(tiny_run):
    out, summary = tiny_run
    scores = out / "finetune" / "dir_100pct_seed0" / "scores.json"
    before = scores.stat().st_mtime_ns
    again = run_ablation(TINY, out, progress=False)
    assert scores.stat().st_mtime_ns == before
    assert again["rows"] == summary["rows"]


def test_summary_is_mean_and_sample_std_over_seeds():
    cells = [
        {"init": "dira", "fraction": 1.0, "mean_auc": a, "iobb_acc": {"0.25": b}, "pointing_game": c}
        for a, b, c in ((0.6, 0.2, 0.5), (0.8, 0.4, None))
    ]
    (row,) = summarize(cells)
    assert row["mean_auc"] == pytest.approx(0.7) and row["mean_auc_std"] == pytest.approx(math.sqrt(0.02))
    assert row["pointing_game"] == 0.5 and row["pointing_game_std"] == 0.0  # None is skipped
    assert "| dira | 1% | 2 | 0.700 ± 0.141 |" in markdown_table([row])
    assert all(math.isnan(v) for v in mean_std([None]))


def test_presets_cover_every_init_fraction_and_three_seeds():
    for cfg in CONFIGS.values():
        assert set(cfg.inits) == {"random", "di", "dir", "dira"}
        assert cfg.fractions == (1.0, 10.0, 100.0) and len(cfg.seeds) >= 3
        assert set(cfg.finetune.epochs) == set(cfg.fractions)
