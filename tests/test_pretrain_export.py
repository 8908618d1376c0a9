"""The export of a tiny trained run loads with dira_zoo.load (backbone and U-Net) and with plain timm."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import dira_zoo
from training import export
from training.checkpoint import load
from training.trainer import Trainer

from .pretrain_support import (
    MemoryImages,
    tiny_config,
    torch_globals,  # noqa: F401 (autouse fixture)
)


@pytest.fixture(scope="module")
def dir_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    Trainer(
        tiny_config(run, "mode=dir", "optim.epochs=1"), {"train": MemoryImages(8), "val": MemoryImages(4, 1)}
    ).fit()
    return run


def test_export_loads_in_the_zoo_and_in_plain_timm(dir_run, tmp_path) -> None:
    out = tmp_path / "export"
    assert export.main([str(dir_run), str(out)]) == 0
    state = load(dir_run / "best.pt")["model"]
    prefix = "generator.unet.encoder."
    encoder = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}

    backbone = dira_zoo.load(str(out), head="backbone")
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in encoder.items())
    plain = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in encoder.items())
    assert tuple(plain.pretrained_cfg["mean"]) == (0.0, 0.0, 0.0)  # DiRA feeds [0, 1] without normalising

    unet = dira_zoo.load(str(out), head="unet")
    decoder_key = "decoder.blocks.0.conv1.0.weight"
    assert torch.equal(unet.state_dict()[decoder_key], state[f"generator.unet.{decoder_key}"])

    config = json.loads((out / "config.json").read_text())
    info = config["dira"]
    assert (info["variant"], info["stage"], info["epochs"], info["steps"]) == ("moco", "dir", 1, 2)
    assert info["code_version"].startswith("dira-zoo ")
    assert config["pretrained_cfg"]["std"] == [1.0, 1.0, 1.0] and config["pretrained_cfg"]["input_size"] == [
        3,
        32,
        32,
    ]
    card = (out / "README.md").read_text()
    assert "## Training configuration" in card and "variant: moco" in card and "best.pt" in card


def test_di_export_has_no_decoder(tmp_path) -> None:
    run = tmp_path / "di"
    Trainer(tiny_config(run, "mode=di", "max_steps=1"), {"train": MemoryImages(4)}).fit()
    out = export.export_run(run, tmp_path / "export")
    assert not (out / "decoder.safetensors").exists()
    assert dira_zoo.load(str(out), head="backbone").num_features == 512


def test_push_offline_is_a_one_line_error_after_the_export(dir_run, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "export"
    assert export.main([str(dir_run), str(out), "--push", "dira-zoo/test"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE" in err
    assert (out / "model.safetensors").is_file()  # the folder is written before the upload is tried
    assert "hf-hub:dira-zoo/test" in (out / "README.md").read_text()  # the card names the repo
