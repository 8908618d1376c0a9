"""Fine-tuning: the protocol's pieces, and tiny end-to-end runs on phantoms whose exports load back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import dira_zoo
from dira_zoo.localize_cli import main as localize_main
from dira_zoo.models import create_classifier
from training import phantom
from training.datasets import DatasetError
from training.finetune import (
    FinetuneConfig,
    FinetuneError,
    Task,
    dice_loss,
    dice_scores,
    finetune,
    fit,
    main,
    masked_bce,
)
from training.phantom_render import FINDINGS
from training.transfer_data import label_fraction

SIZE = 64


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ft") / "data"
    phantom.generate(40, root, SIZE, seed=1, masks="findings", progress=False)
    return root


def _config(root: Path, out: Path, **overrides) -> FinetuneConfig:
    values = dict(
        data=str(root), out=str(out), arch="resnet18", labels=FINDINGS, max_epochs=2, image_size=SIZE,
        batch_size=8, workers=0, device="cpu", progress=False,
    )  # fmt: skip
    values.update(overrides)
    return FinetuneConfig(**values)


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape=(2, 3, SIZE, SIZE)) -> None:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_classification_run_metrics_and_export(phantom_root: Path, tmp_path: Path):
    result = finetune(_config(phantom_root, tmp_path / "run", tta="tencrop"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["per_class_auc"]) == set(FINDINGS) and metrics["label_names"] == list(FINDINGS)
    known = [v for v in metrics["per_class_auc"].values() if v is not None]
    assert known and all(0 <= v <= 1 for v in known)
    assert metrics["mean_auc"] == pytest.approx(np.mean(known))
    assert metrics["epochs"] == 2 and metrics["stage"] == "finetuned" and metrics["tta"] == "tencrop"
    assert metrics["train_images"] + metrics["val_images"] + metrics["test_images"] == 40
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0] == "epoch,train_loss,val_loss,lr,seconds" and len(log) == 3
    # the export: zoo format, label names, test-time preprocessing, provenance; same outputs
    folder = tmp_path / "run" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["label_names"] == list(FINDINGS) and config["num_classes"] == len(FINDINGS)
    assert config["dira"]["stage"] == "finetuned" and config["dira"]["source"] == "random"
    assert config["pretrained_cfg"]["crop_pct"] == 0.875
    loaded = dira_zoo.load(folder)
    assert tuple(loaded.pretrained_cfg["label_names"]) == FINDINGS
    _same_outputs(result.model, loaded)
    # ... and dira-localize takes it as it is
    image = sorted((phantom_root / "images").iterdir())[0]
    assert localize_main([str(image), "--model", str(folder), "--out", str(tmp_path / "loc")]) == 0
    record = json.loads((tmp_path / "loc" / f"{image.stem}.json").read_text())
    assert set(record) and (tmp_path / "loc" / f"{image.stem}_heatmap.png").is_file()


def test_finetune_from_an_export_with_label_fraction_and_no_tta(phantom_root: Path, tmp_path: Path):
    first = finetune(_config(phantom_root, tmp_path / "a", max_epochs=1, tta="none"))
    second = finetune(
        _config(phantom_root, tmp_path / "b", max_epochs=1, tta="none", label_fraction=25,
                source=str(tmp_path / "a" / "model"))
    )  # fmt: skip
    assert second.metrics["init"] == "pretrained" and second.metrics["head"] == "kept"
    assert second.metrics["train_images"] == int(first.metrics["train_images"] * 0.25)


def test_label_fraction_follows_the_protocol():
    names = list(range(1000))
    random.Random(99).shuffle(names)
    assert label_fraction(1000, 25) == names[:250]
    assert label_fraction(1000, 1) == names[:10]
    assert label_fraction(1000, 25) == label_fraction(1000, 25)
    assert label_fraction(7, 100) == list(range(7))
    assert label_fraction(50, 1) == [label_fraction(50, 50)[0]]  # never empty
    with pytest.raises(DatasetError):
        label_fraction(10, 0)


def test_linear_probe_changes_only_the_head(tmp_path: Path):
    torch.manual_seed(0)
    model = create_classifier("resnet18", 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.rand(8, 3, 32, 32), torch.randint(0, 2, (8, 3)).float())
    loaders = {"train": DataLoader(data, batch_size=4), "val": DataLoader(data, batch_size=8)}
    task = Task(masked_bce, lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1), False, None)
    cfg = FinetuneConfig(data=".", out=".", linear_probe=True, max_epochs=2, lr=1e-2, progress=False)
    best = fit(model, loaders, task, cfg, torch.device("cpu"), tmp_path)
    changed = {k for k, v in best.state.items() if not torch.equal(v, before[k])}
    assert changed == {"fc.weight", "fc.bias"}


def test_masked_bce_ignores_unknown_labels():
    logits = torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.5, -0.4]])
    target = torch.tensor([[1.0, float("nan"), 0.0], [float("nan"), 1.0, 0.0]])
    known = ~torch.isnan(target)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], target[known])
    torch.testing.assert_close(masked_bce(logits, target), expected)
    assert torch.isnan(torch.nn.functional.binary_cross_entropy_with_logits(logits, target))


def test_dice_on_a_hand_case():
    pred = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 0]], [[1, 0, 0, 0]]])
    truth = np.array([[[1, 0, 1, 0]], [[0, 0, 0, 0]], [[0, 1, 0, 0]]])
    pooled, per_image = dice_scores(pred, truth)
    assert pooled == pytest.approx(2 * 1 / (3 + 3))  # 1 shared pixel; 3 predicted, 3 true
    assert per_image == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    logits = torch.tensor([[20.0, 20.0, -20.0, -20.0]])
    loss = dice_loss(logits, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    assert float(loss) == pytest.approx(1 - (2 * 1 + 1) / (2 + 2 + 1), abs=1e-6)


def test_segmentation_run_and_unet_export(phantom_root: Path, tmp_path: Path):
    result = finetune(_config(phantom_root, tmp_path / "seg", task="segmentation", max_epochs=1))
    m = result.metrics
    assert 0 <= m["dice"] <= 1 and 0 <= m["dice_per_image"] <= 1 and m["init"] == "random"
    assert m["label_names"] == [] and (tmp_path / "seg" / "model" / "decoder.safetensors").is_file()
    loaded = dira_zoo.load(tmp_path / "seg" / "model", head="unet")
    _same_outputs(result.model, loaded)
    # a classifier export has no decoder: the encoder alone initialises the U-Net
    finetune(_config(phantom_root, tmp_path / "cls", max_epochs=1, tta="none"))
    from_encoder = finetune(
        _config(phantom_root, tmp_path / "seg2", task="segmentation", max_epochs=1,
                source=str(tmp_path / "cls" / "model"))
    )  # fmt: skip
    assert from_encoder.metrics["init"] == "encoder"


def test_cli_user_errors(phantom_root: Path, tmp_path: Path, capsys):
    out = str(tmp_path / "x")
    assert main(["--data", str(phantom_root), "--out", out, "--task", "segmentation", "--linear-probe"]) == 2
    assert "linear-probe" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "nowhere"), "--out", out, "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and len(err.splitlines()) == 1
    with pytest.raises(FinetuneError):
        FinetuneConfig(data=".", out=".", tta="fivecrop")


def test_crop_scale_reaches_the_train_crops_and_is_validated() -> None:
    from training.datasets import XrayDataset
    from training.transfer_data import Classification

    reader = XrayDataset([], np.zeros((0, 1), np.float32), ("Nodule",))
    crop = Classification(reader, 64, "train", "none", crop_scale=0.6).augment.transforms[0]
    assert tuple(crop.scale) == (0.6, 1.0)
    assert tuple(Classification(reader, 64, "train").augment.transforms[0].scale) == (0.08, 1.0)
    with pytest.raises(FinetuneError, match="crop_scale"):
        FinetuneConfig(data="d", out="o", crop_scale=0.0)
