"""The registry: the paper's three records, lookups, close-name suggestions, what every record must pin."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from dira_zoo import registry
from dira_zoo.errors import UnknownModelError
from dira_zoo.registry import CHESTXRAY14_LABELS, EMBEDDED_ROOT, Weights, get_weights, list_models, register
from dira_zoo.transforms import NO_NORM_MEAN, NO_NORM_STD, Preprocess

PAPER_MODELS = ("dira_moco_chestxray14", "dira_barlowtwins_chestxray14", "dira_simsiam_chestxray14")


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_models_are_registered(name: str) -> None:
    w = get_weights(name)
    assert w.name == name
    assert w.architecture == "resnet50"
    assert w.hub_id == f"dira-zoo/{name}"
    assert w.variant == name.split("_")[1]
    assert w.stage == "dira"
    assert w.pretraining_data == "NIH ChestX-ray14"
    assert "arXiv:2204.10437" in w.paper
    assert w.input_size == (3, 224, 224)
    # DiRA pretraining feeds ToTensor() output: no normalisation
    pre = w.transforms()
    assert isinstance(pre, Preprocess)
    assert (pre.mean, pre.std) == (NO_NORM_MEAN, NO_NORM_STD)


def test_unpublished_records_say_so() -> None:
    for name in PAPER_MODELS:
        w = get_weights(name)
        if w.revision is None and w.embedded is None:
            assert not w.published
            assert w.meta["published"] is False


def test_weights_is_frozen_and_meta_is_json() -> None:
    w = get_weights("dira_moco_chestxray14")
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.name = "other"  # type: ignore[misc]
    meta = json.loads(json.dumps(w.meta))
    for key in (
        "name",
        "hub_id",
        "revision",
        "files",
        "architecture",
        "input_size",
        "preprocess",
        "label_names",
        "pretraining_data",
        "variant",
        "license",
        "paper",
        "published",
    ):
        assert key in meta


def test_list_models_pattern_and_published_only() -> None:
    names = list_models()
    assert names == sorted(names)
    assert set(PAPER_MODELS) <= set(names)
    assert list_models("dira_moco_*") == ["dira_moco_chestxray14"]
    assert list_models("no_such_*") == []
    assert all(get_weights(n).published for n in list_models(published_only=True))


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError, match="Did you mean dira_moco_chestxray14") as info:
        get_weights("dira_moco_chestxray")
    assert "\n" not in str(info.value)
    with pytest.raises(UnknownModelError, match="dira-zoo list"):
        get_weights("completely-different")


def test_register_adds_and_refuses_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    w = register(Weights(name="my_model", architecture="resnet18", description="test"))
    assert get_weights("my_model") is w
    assert "my_model" in list_models()
    with pytest.raises(ValueError, match="already registered"):
        register(Weights(name="my_model", architecture="resnet18", description="test"))


@pytest.mark.parametrize("name", list_models(published_only=True) or ["(none published)"])
def test_published_records_pin_everything(name: str) -> None:
    if name == "(none published)":
        pytest.skip("no published record yet")
    w = get_weights(name)
    names = dict(w.files)
    assert {"config.json", "model.safetensors"} <= set(names)
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in names.values())
    if w.embedded is not None:
        from dira_zoo.hub import sha256_file

        for file, digest in names.items():
            assert sha256_file(EMBEDDED_ROOT / w.embedded / file) == digest
    else:
        assert re.fullmatch(r"[0-9a-f]{40}", w.revision or ""), "a Hub record pins a commit, never a branch"
    if w.num_classes:
        assert len(w.label_names) == w.num_classes


def test_default_model_is_registered_when_set() -> None:
    if registry.DEFAULT_MODEL is not None:
        assert registry.DEFAULT_MODEL in list_models()


def test_chestxray14_labels() -> None:
    assert len(CHESTXRAY14_LABELS) == 14
    assert CHESTXRAY14_LABELS[0] == "Atelectasis" and CHESTXRAY14_LABELS[-1] == "Hernia"
