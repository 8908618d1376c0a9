"""Official DiRA checkpoints: the three layouts the official code writes (docs/dira_method.md §2.3, §6).

Each synthetic checkpoint is built from a real ``UNet("resnet50")`` state dict (random weights, the
real key names and shapes), wrapped exactly as the official code wraps it; the converted tensors must
equal the source key by key.
"""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import timm
import torch

from dira_zoo.convert import ConvertedWeights, convert_official, convert_state_dict, infer_resnet_architecture
from dira_zoo.errors import WeightsError
from dira_zoo.hub import load
from dira_zoo.models import UNet, create_classifier

QUEUE = 64  # the real queue is 65,536 columns; its size does not matter to conversion


@pytest.fixture(scope="module")
def unet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = UNet("resnet50").state_dict()
    # make every buffer distinctive so that a mix-up of tensors cannot go unnoticed
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            value.fill_(7)
        elif key.endswith(("running_mean", "running_var", "bias")) or key.startswith("segmentation_head"):
            value.uniform_(0.5, 1.5)
    return state


def _mlp(prefix: str) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}fc.0.weight": torch.randn(2048, 2048),
        f"{prefix}fc.0.bias": torch.randn(2048),
        f"{prefix}fc.2.weight": torch.randn(128, 2048),
        f"{prefix}fc.2.bias": torch.randn(128),
    }


def _momentum_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v + 1 if v.is_floating_point() else v + 1) for k, v in state.items()}


@pytest.fixture(scope="module")
def official(
    tmp_path_factory: pytest.TempPathFactory, unet_state: dict[str, torch.Tensor]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("official")
    paths: dict[str, Path] = {}

    # 1. best_checkpoint.pth / unet.pth / DiRA_moco-v2.pth: the flat smp U-Net state dict
    paths["unet"] = root / "DiRA_moco-v2.pth"
    torch.save(dict(unet_state), paths["unet"])

    # 2. the training checkpoint.pth of main_DiRA_moco.py (DDP: module.*)
    sd: dict[str, torch.Tensor] = {f"module.encoder_q.backbone.{k}": v for k, v in unet_state.items()}
    sd.update(_mlp("module.encoder_q."))
    sd.update({f"module.encoder_k.backbone.{k}": v for k, v in _momentum_copy(unet_state).items()})
    sd.update(_mlp("module.encoder_k."))
    sd["module.queue"] = torch.nn.functional.normalize(torch.randn(128, QUEUE), dim=0)
    sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    optimizer = {
        "state": {},
        "param_groups": [{"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4, "params": [0, 1]}],
    }
    paths["checkpoint"] = root / "checkpoint.pth"
    torch.save(
        {"epoch": 400, "arch": "resnet50", "state_dict": sd, "optimizer": optimizer, "best_loss": 0.25},
        paths["checkpoint"],
    )

    # 3. mode `di`: MoCo-v2 on a torchvision ResNet-50 with the MLP head fc.0/fc.2
    encoder = {k[len("encoder.") :]: v for k, v in unet_state.items() if k.startswith("encoder.")}
    di: dict[str, torch.Tensor] = {f"module.encoder_q.{k}": v for k, v in encoder.items()}
    di.update(_mlp("module.encoder_q."))
    di.update({f"module.encoder_k.{k}": v for k, v in _momentum_copy(encoder).items()})
    di.update(_mlp("module.encoder_k."))
    di["module.queue"] = torch.randn(128, QUEUE)
    di["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    paths["di"] = root / "di_checkpoint.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": di, "optimizer": optimizer}, paths["di"])
    return paths


def _expected(unet_state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    encoder = {k[len("encoder.") :]: v for k, v in unet_state.items() if k.startswith("encoder.")}
    decoder = {k: v for k, v in unet_state.items() if not k.startswith("encoder.")}
    return encoder, decoder


def _assert_equal_states(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize("layout", ["unet", "checkpoint", "di"])
def test_conversion_equals_the_source_key_by_key(layout: str, official, unet_state) -> None:
    converted = convert_official(official[layout])
    assert isinstance(converted, ConvertedWeights)
    assert converted.layout == layout
    assert converted.architecture == "resnet50"
    encoder, decoder = _expected(unet_state)
    _assert_equal_states(converted.encoder, encoder)
    if layout == "di":
        assert converted.decoder is None
    else:
        _assert_equal_states(converted.decoder, decoder)
    # the encoder is exactly a headless timm ResNet-50
    assert set(converted.encoder) == set(create_classifier("resnet50", 0).state_dict())
    if layout != "unet":  # momentum encoder, queue and projection MLP are dropped
        assert any("encoder_k" in k for k in converted.dropped)
        assert any("queue" in k for k in converted.dropped)
        assert any(k.startswith("fc.") or ".fc." in k for k in converted.dropped)


@pytest.mark.parametrize("layout", ["unet", "checkpoint"])
def test_load_pth_as_unet_restores_every_tensor(layout: str, official, unet_state) -> None:
    model = load(str(official[layout]), head="unet")
    _assert_equal_states(model.state_dict(), unet_state)
    assert not model.training
    assert model.pretrained_cfg["mean"] == [0.0, 0.0, 0.0]  # DiRA feeds [0, 1] input


def test_load_di_pth_as_classifier_and_no_decoder(official, unet_state) -> None:
    encoder, _ = _expected(unet_state)
    model = load(str(official["di"]), num_classes=14)
    state = model.state_dict()
    assert state["fc.weight"].shape == (14, 2048)
    for key, value in encoder.items():
        assert torch.equal(state[key], value), key
    backbone = load(str(official["di"]), head="backbone")
    assert backbone.num_classes == 0
    with pytest.raises(WeightsError, match="no decoder"):
        load(str(official["di"]), head="unet")


def test_converted_export_loads_in_plain_timm(tmp_path: Path, official, unet_state) -> None:
    from dira_zoo.cli import zoo_main

    out = tmp_path / "export"
    assert (
        zoo_main(["convert", str(official["checkpoint"]), str(out), "--variant", "moco", "--epochs", "400"])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "decoder.safetensors",
        "model.safetensors",
    ]
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    encoder, _ = _expected(unet_state)
    _assert_equal_states(model.state_dict(), encoder)


# --- rejections ----------------------------------------------------------------------------------


class _Payload:
    """Unpickling this would create a file: weights_only=True must refuse it without running it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_with_code_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        convert_official(path)
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load(str(path))
    assert not marker.exists()


def test_pickle_with_a_non_tensor_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.pth"
    torch.save({"model": _Plain()}, path)
    with pytest.raises(WeightsError, match="refusing to unpickle") as info:
        convert_official(path)
    assert "\n" not in str(info.value)


class _Plain:
    pass


def test_garbage_and_empty_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x89PNG not a checkpoint at all" * 10)
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        convert_official(garbage)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        convert_official(empty)
    with pytest.raises(WeightsError, match="no such file"):
        convert_official(tmp_path / "missing.pth")


def test_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    for i, obj in enumerate([torch.zeros(3), [torch.zeros(3)], {}, {"epoch": 3, "lr": 0.1}]):
        path = tmp_path / f"x{i}.pth"
        torch.save(obj, path)
        with pytest.raises(WeightsError, match="not a state dict|no recognisable"):
            convert_official(path)


def test_state_dict_without_encoder_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"backbone.blocks.0.weight": torch.zeros(3), "head.weight": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="no recognisable DiRA encoder keys.*backbone.blocks.0.weight"):
        convert_official(path)


def test_wrong_architecture_flag_is_refused(tmp_path: Path, official, capsys) -> None:
    from dira_zoo.cli import zoo_main
    from dira_zoo.hub import export

    converted = convert_official(official["unet"])
    with pytest.raises(WeightsError, match="do not fit resnet18.*wrong architecture"):
        export(converted.encoder, tmp_path / "x", architecture="resnet18")
    assert zoo_main(["convert", str(official["unet"]), str(tmp_path / "y"), "--arch", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not fit resnet18" in err
    assert not (tmp_path / "y").exists()


def test_infer_resnet_architecture() -> None:
    for arch in ("resnet18", "resnet34", "resnet50", "resnet101"):
        with torch.device("meta"):
            state = create_classifier(arch, 0).state_dict()
        assert infer_resnet_architecture(state) == arch
    assert infer_resnet_architecture({"x": torch.zeros(1)}) == "resnet50"


def test_convert_state_dict_plain_resnet_drops_fc() -> None:
    state = create_classifier("resnet18", 128).state_dict()
    converted = convert_state_dict(state)
    assert converted.layout == "di"
    assert "fc.weight" not in converted.encoder and "fc.weight" in converted.dropped
