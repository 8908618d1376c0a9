"""The networks: the U-Net's shapes and parameter names (= the official checkpoints' names); load_checked."""

from __future__ import annotations

import re

import pytest
import torch

from dira_zoo.errors import WeightsError
from dira_zoo.models import DECODER_CHANNELS, UNet, create_classifier, create_encoder, head_keys, load_checked

# docs/dira_method.md §1.1, the decoder table for ResNet-50: conv1 in -> out per block. Block 4 is
# input 64 + skip 64 = 128 -> 32 (as smp 0.1.3 computes it); the table's "96→32" is an arithmetic slip.
RESNET50_DECODER_CONV1 = [(3072, 256), (768, 128), (384, 64), (128, 32), (32, 16)]


@pytest.fixture(scope="module")
def unet50() -> UNet:
    torch.manual_seed(0)
    return UNet("resnet50").eval()


def test_unet_resnet50_shapes_at_224(unet50: UNet) -> None:
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        feats = unet50.encode(x)
        out = unet50(x)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 112, 112),
        (256, 56, 56),
        (512, 28, 28),
        (1024, 14, 14),
        (2048, 7, 7),
    ]
    assert out.shape == (1, 1, 224, 224)


def test_unet_resnet18_shapes_and_sigmoid() -> None:
    net = UNet("resnet18", out_channels=2, activation="sigmoid").eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 2, 64, 64)
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="activation"):
        UNet("resnet18", activation="softmax")


def test_unet_keys_are_the_official_names(unet50: UNet) -> None:
    keys = set(unet50.state_dict())
    for official in (
        "encoder.conv1.weight",
        "encoder.bn1.running_mean",
        "encoder.layer1.0.downsample.0.weight",
        "encoder.layer4.2.bn3.running_var",
        "decoder.blocks.0.conv1.0.weight",
        "decoder.blocks.0.conv1.1.weight",
        "decoder.blocks.0.conv1.1.bias",
        "decoder.blocks.0.conv1.1.running_mean",
        "decoder.blocks.0.conv1.1.running_var",
        "decoder.blocks.0.conv1.1.num_batches_tracked",
        "decoder.blocks.4.conv2.1.num_batches_tracked",
        "segmentation_head.0.weight",
        "segmentation_head.0.bias",
    ):
        assert official in keys, official
    # Nothing outside the three official groups; no classifier in the encoder; no bias on decoder convs.
    assert all(k.split(".")[0] in {"encoder", "decoder", "segmentation_head"} for k in keys)
    assert not any(k.startswith("encoder.fc") for k in keys)
    decoder = [k for k in keys if k.startswith("decoder.")]
    assert all(re.fullmatch(r"decoder\.blocks\.[0-4]\.conv[12]\.[01]\.\w+", k) for k in decoder)
    assert "decoder.blocks.0.conv1.0.bias" not in keys
    # the encoder part is a plain timm ResNet-50 without its head
    enc = {k[len("encoder.") :] for k in keys if k.startswith("encoder.")}
    assert enc == set(create_encoder("resnet50").state_dict())


def test_decoder_conv_shapes_match_the_method_table(unet50: UNet) -> None:
    state = unet50.state_dict()
    for i, (cin, cout) in enumerate(RESNET50_DECODER_CONV1):
        assert tuple(state[f"decoder.blocks.{i}.conv1.0.weight"].shape) == (cout, cin, 3, 3)
        assert tuple(state[f"decoder.blocks.{i}.conv2.0.weight"].shape) == (cout, cout, 3, 3)
        assert tuple(state[f"decoder.blocks.{i}.conv1.1.weight"].shape) == (cout,)
    assert [c for _, c in RESNET50_DECODER_CONV1] == list(DECODER_CHANNELS)
    assert tuple(state["segmentation_head.0.weight"].shape) == (1, 16, 3, 3)
    # init: BN weight 1 / bias 0, head bias 0
    assert torch.all(state["decoder.blocks.2.conv2.1.weight"] == 1)
    assert torch.all(state["decoder.blocks.2.conv2.1.bias"] == 0)
    assert torch.all(state["segmentation_head.0.bias"] == 0)


def test_create_classifier_and_head_keys() -> None:
    clf = create_classifier("resnet18", 14)
    assert head_keys(clf) == {"fc.weight", "fc.bias"}
    backbone = create_classifier("resnet18", 0)
    assert head_keys(backbone) == set()
    with torch.no_grad():
        assert backbone(torch.rand(1, 3, 64, 64)).shape == (1, 512)


class TestLoadChecked:
    def test_exact_state_loads_and_nothing_is_reinitialised(self) -> None:
        src = create_classifier("resnet18", 3)
        dst = create_classifier("resnet18", 3)
        assert load_checked(dst, src.state_dict()) == []
        assert all(
            torch.equal(a, b)
            for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True)
        )

    def test_head_of_another_size_is_reinitialised(self) -> None:
        src = create_classifier("resnet18", 3)
        dst = create_classifier("resnet18", 5)
        fresh = load_checked(dst, src.state_dict())
        assert fresh == ["fc.bias", "fc.weight"]
        assert torch.equal(
            dst.state_dict()["layer4.1.conv2.weight"], src.state_dict()["layer4.1.conv2.weight"]
        )

    def test_missing_head_is_allowed(self) -> None:
        backbone = create_classifier("resnet18", 0).state_dict()
        dst = create_classifier("resnet18", 4)
        assert load_checked(dst, backbone) == ["fc.bias", "fc.weight"]

    def test_missing_backbone_key_is_an_error(self) -> None:
        state = create_classifier("resnet18", 0).state_dict()
        del state["layer2.0.bn1.running_var"]
        with pytest.raises(WeightsError, match=r"1 missing \(e\.g\. layer2\.0\.bn1\.running_var\)"):
            load_checked(create_classifier("resnet18", 0), state)

    def test_unexpected_key_is_an_error(self) -> None:
        state = create_classifier("resnet34", 0).state_dict()  # resnet34 has more blocks than resnet18
        with pytest.raises(WeightsError, match=r"unexpected \(e\.g\. layer1\.2\."):
            load_checked(create_classifier("resnet18", 0), state)

    def test_other_shape_outside_the_head_is_an_error(self) -> None:
        state = create_classifier("resnet18", 0).state_dict()
        state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
        with pytest.raises(WeightsError, match="other shapes.*conv1.weight.*wrong architecture"):
            load_checked(create_classifier("resnet18", 0), state)

    def test_allowed_prefixes(self) -> None:
        net = UNet("resnet18", out_channels=1)
        state = UNet("resnet18", out_channels=3).state_dict()
        with pytest.raises(WeightsError):
            load_checked(net, state)
        assert load_checked(net, state, allowed_prefixes=("segmentation_head.",)) == [
            "segmentation_head.0.bias",
            "segmentation_head.0.weight",
        ]
