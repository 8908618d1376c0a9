"""Sources, the export folder format, loading from folders / files / the HF cache, checksums, errors, push.

Nothing here reaches a network: the Hub path is tested against a cache laid out by hand exactly as
huggingface_hub lays it out (``models--org--name/{blobs,refs,snapshots}``), and the no-network path
against a closed loopback port.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
import timm
import torch
import yaml

from dira_zoo import hub, registry
from dira_zoo.errors import ChecksumError, UnknownModelError, WeightsError
from dira_zoo.hub import (
    DIRA_PREPROCESS,
    Source,
    export,
    label_names_for,
    load,
    preprocess_for,
    read_export,
    resolve_source,
    sha256_file,
    weights_record,
)
from dira_zoo.models import UNet, create_classifier
from dira_zoo.registry import CHESTXRAY14_LABELS, Weights
from dira_zoo.transforms import Preprocess

SMALL = Preprocess(input_size=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
REVISION = "0123456789abcdef0123456789abcdef01234567"
REPO = "dira-test/tiny-resnet18"


def _x(size: int = 64, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int = 64) -> bool:
    x = _x(size)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_classifier("resnet18", 3).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer changes the output
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory, small_model) -> Path:
    out = tmp_path_factory.mktemp("exports") / "tiny"
    dira = {"variant": "moco", "stage": "finetuned", "pretraining_data": "NIH ChestX-ray14", "epochs": 3}
    return export(
        small_model, out, label_names=["Atelectasis", "Effusion", "Mass"], preprocess=SMALL, dira=dira
    )


@pytest.fixture(scope="module")
def unet_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[UNet, Path]:
    torch.manual_seed(1)
    net = UNet("resnet18").eval()
    out = tmp_path_factory.mktemp("exports") / "unet"
    export(net, out, preprocess=SMALL, dira={"variant": "moco", "stage": "dira"})
    return net, out


# --- resolve_source ------------------------------------------------------------------------------


class TestResolveSource:
    def test_registry_name(self) -> None:
        src = resolve_source("dira_moco_chestxray14")
        assert src.kind == "registry" and src.weights is registry.get_weights("dira_moco_chestxray14")
        assert src.repo_id == "dira-zoo/dira_moco_chestxray14"

    def test_registry_name_with_other_revision_is_not_pinned(self) -> None:
        src = resolve_source("dira_moco_chestxray14", revision="a" * 40)
        assert src.kind == "registry" and src.revision == "a" * 40 and not src.pinned

    def test_hf_hub(self) -> None:
        assert resolve_source("hf-hub:org/name") == Source("hf-hub", "org/name", "main")
        assert resolve_source("hf-hub:org/name@v1.0") == Source("hf-hub", "org/name", "v1.0")
        assert resolve_source("hf-hub:org/name", revision="abc").revision == "abc"
        with pytest.raises(WeightsError, match="revision"):
            resolve_source("hf-hub:org/name@v1", revision="v2")
        with pytest.raises(WeightsError, match="hf-hub:org/name"):
            resolve_source("hf-hub:not a repo")

    def test_folder_and_local_dir(self, tmp_path: Path) -> None:
        assert resolve_source(str(tmp_path)) == Source("folder", str(tmp_path))
        assert resolve_source(tmp_path).kind == "folder"  # a Path works too
        assert resolve_source(f"local-dir:{tmp_path}") == Source("folder", str(tmp_path))

    def test_files(self, tmp_path: Path) -> None:
        assert resolve_source(str(tmp_path / "w.safetensors")).kind == "safetensors"
        for name in ("DiRA_moco-v2.pth", "x.pt", "checkpoint.pth.tar"):
            assert resolve_source(str(tmp_path / name)).kind == "official"
        other = tmp_path / "weights.txt"
        other.write_text("x")
        with pytest.raises(WeightsError, match="unsupported weights file"):
            resolve_source(str(other))

    def test_unknown_names_and_paths(self, tmp_path: Path) -> None:
        with pytest.raises(UnknownModelError, match="Did you mean dira_moco_chestxray14"):
            resolve_source("dira_moco_chestxray")
        with pytest.raises(WeightsError, match="no such file or folder"):
            resolve_source(str(tmp_path / "nope"))
        with pytest.raises(WeightsError, match="hf-hub:someorg/somerepo"):
            resolve_source("someorg/somerepo")

    def test_resolving_touches_no_network(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(*a, **k):
            raise AssertionError("network touched")

        monkeypatch.setattr(socket, "create_connection", boom)
        monkeypatch.setattr(hub, "hub_download", boom)
        resolve_source("hf-hub:org/name@main")
        resolve_source("dira_simsiam_chestxray14")


# --- the export format and the round trip -----------------------------------------------------------


def test_export_folder_layout(small_export: Path) -> None:
    assert sorted(p.name for p in small_export.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((small_export / "config.json").read_text())
    assert config["architecture"] == "resnet18"
    assert config["num_classes"] == 3 and config["num_features"] == 512
    assert config["label_names"] == ["Atelectasis", "Effusion", "Mass"]
    pcfg = config["pretrained_cfg"]
    assert pcfg["input_size"] == [3, 64, 64] and pcfg["mean"] == [0.5] * 3 and pcfg["std"] == [0.25] * 3
    assert pcfg["interpolation"] == "bilinear" and pcfg["crop_pct"] == 1.0 and pcfg["license"] == "apache-2.0"
    assert pcfg["classifier"] == "fc" and pcfg["num_classes"] == 3
    # every pretrained_cfg key is one timm knows (timm builds a PretrainedCfg from it)
    from timm.models import PretrainedCfg

    PretrainedCfg(**pcfg)
    dira = config["dira"]
    assert dira["variant"] == "moco" and dira["stage"] == "finetuned" and dira["epochs"] == 3
    assert (
        dira["pretraining_data"] == "NIH ChestX-ray14" and dira["code_version"] and dira["decoder"] is False
    )
    # safetensors metadata names the architecture; nothing is pickled
    from safetensors import safe_open

    with safe_open(str(small_export / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["architecture"] == "resnet18"


def test_model_card_has_hf_metadata(small_export: Path) -> None:
    text = (small_export / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "apache-2.0"
    assert front["library_name"] == "timm"
    assert {"dira", "self-supervised", "chest-x-ray", "medical-imaging", "image-classification"} <= set(
        front["tags"]
    )
    assert front["datasets"] == ["NIH ChestX-ray14"]
    assert front["pipeline_tag"] == "image-classification"
    assert "arXiv:2204.10437" in text and "| variant | moco |" in text and "| epochs | 3 |" in text


def test_round_trip_resnet18_timm_and_dira_zoo_agree(small_export: Path, small_model) -> None:
    plain = timm.create_model(f"local-dir:{small_export}", pretrained=True).eval()
    ours = load(small_export)
    assert _same_outputs(plain, small_model)
    assert _same_outputs(ours, small_model)
    assert plain.pretrained_cfg["label_names"] == ["Atelectasis", "Effusion", "Mass"]
    assert label_names_for(ours) == ("Atelectasis", "Effusion", "Mass")
    assert preprocess_for(ours) == SMALL
    assert not ours.training
    assert ours.dira_meta["variant"] == "moco"


def test_round_trip_resnet50(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = create_classifier("resnet50", 14).eval()
    out = export(
        model,
        tmp_path / "r50",
        label_names=CHESTXRAY14_LABELS,
        preprocess=DIRA_PREPROCESS,
        dira={"variant": "barlowtwins", "stage": "finetuned"},
    )
    plain = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    ours = load(str(out))
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(plain(x), want) and torch.equal(ours(x), want)
    assert label_names_for(ours) == CHESTXRAY14_LABELS
    assert preprocess_for(ours) == DIRA_PREPROCESS


def test_single_safetensors_file(small_export: Path, small_model) -> None:
    ours = load(str(small_export / "model.safetensors"))
    assert _same_outputs(ours, small_model)
    assert label_names_for(ours) == ("Atelectasis", "Effusion", "Mass")
    assert preprocess_for(ours) == SMALL


def test_single_safetensors_without_metadata_infers_the_resnet(tmp_path: Path, unet_export) -> None:
    from safetensors.torch import save_file

    net, _ = unet_export
    path = tmp_path / "unet.safetensors"
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(path)
    )  # a U-Net state, no metadata
    model = load(str(path), head="unet")
    assert _same_outputs(model, net)


# --- heads -------------------------------------------------------------------------------------------


def test_head_resizing_keeps_the_backbone(small_export: Path, small_model) -> None:
    model = load(small_export, num_classes=5)
    assert model.get_classifier().out_features == 5
    state, src = model.state_dict(), small_model.state_dict()
    assert all(torch.equal(state[k], src[k]) for k in src if not k.startswith("fc."))
    assert label_names_for(model) == tuple(f"class_{i}" for i in range(5))


def test_backbone_head(small_export: Path, small_model) -> None:
    model = load(small_export, head="backbone")
    assert model.num_classes == 0
    x = _x()
    with torch.no_grad():
        want = small_model.forward_head(small_model.forward_features(x), pre_logits=True)
        assert torch.equal(model(x), want)
    with pytest.raises(ValueError, match="backbone"):
        load(small_export, head="backbone", num_classes=3)
    with pytest.raises(ValueError, match="head must be"):
        load(small_export, head="segmenter")


def test_unet_head(unet_export) -> None:
    net, folder = unet_export
    assert (folder / "decoder.safetensors").is_file()
    model = load(folder, head="unet")
    assert _same_outputs(model, net)
    three = load(folder, head="unet", num_classes=3)
    assert three.segmentation_head[0].out_channels == 3
    got, want = three.state_dict(), net.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("segmentation_head."))
    # the same export as a classifier: the encoder with a new head
    clf = load(folder, num_classes=2)
    assert torch.equal(clf.state_dict()["layer1.0.conv1.weight"], want["encoder.layer1.0.conv1.weight"])
    # and plain timm loads the encoder part as a backbone
    plain = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert plain.num_classes == 0


def test_unet_head_needs_a_decoder(small_export: Path) -> None:
    with pytest.raises(WeightsError, match="no decoder"):
        load(small_export, head="unet")


def test_device_and_not_pretrained(small_export: Path, small_model) -> None:
    model = load(small_export, device="cpu", pretrained=False)
    assert next(model.parameters()).device.type == "cpu"
    assert model.get_classifier().out_features == 3
    assert not _same_outputs(model, small_model)
    assert load("dira_moco_chestxray14", pretrained=False).num_classes == 0  # no download needed


# --- wrong architecture and broken folders -------------------------------------------------------


def _retag(folder: Path, dest: Path, architecture: str) -> Path:
    shutil.copytree(folder, dest)
    config = json.loads((dest / "config.json").read_text())
    config["architecture"] = architecture
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_wrong_architecture_lists_missing_and_unexpected(tmp_path: Path) -> None:
    r34 = export(create_classifier("resnet34", 0), tmp_path / "r34")
    r18 = export(create_classifier("resnet18", 0), tmp_path / "r18")
    with pytest.raises(
        WeightsError, match=r"0 missing .*unexpected \(e\.g\. layer1\.2\..*wrong architecture"
    ):
        load(_retag(r34, tmp_path / "a", "resnet18"))
    with pytest.raises(WeightsError, match=r"missing \(e\.g\. layer1\.2\..*0 unexpected"):
        load(_retag(r18, tmp_path / "b", "resnet34"))
    with pytest.raises(WeightsError, match="other shapes.*wrong architecture"):
        load(_retag(r18, tmp_path / "c", "resnet50"))
    with pytest.raises(WeightsError, match="unknown architecture"):
        load(_retag(r18, tmp_path / "d", "no_such_net"))


def test_export_refuses_weights_that_do_not_fit(tmp_path: Path) -> None:
    state = create_classifier("resnet18", 0).state_dict()
    with pytest.raises(WeightsError, match="do not fit resnet34"):
        export(state, tmp_path / "x", architecture="resnet34")
    with pytest.raises(ValueError, match="label names"):
        export(create_classifier("resnet18", 2), tmp_path / "y", label_names=["a", "b", "c"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_overwrite_rules(tmp_path: Path, unet_export) -> None:
    net, _ = unet_export
    out = export(net, tmp_path / "e")
    with pytest.raises(WeightsError, match="not empty"):
        export(create_classifier("resnet18", 0), out)
    export(create_classifier("resnet18", 0), out, overwrite=True)
    assert not (out / "decoder.safetensors").exists()  # no stale decoder from the U-Net export
    (out / "notes.txt").write_text("mine")
    with pytest.raises(WeightsError, match="other files"):
        export(create_classifier("resnet18", 0), out, overwrite=True)


def test_broken_folders(tmp_path: Path, small_export: Path) -> None:
    with pytest.raises(WeightsError, match="not a dira-zoo/timm export folder"):
        load(tmp_path)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(small_export / "config.json", pickled)
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="pickled weights are not loaded"):
        load(pickled)
    bad = tmp_path / "bad"
    shutil.copytree(small_export, bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable config"):
        load(bad)
    (bad / "config.json").write_text((small_export / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a readable .safetensors"):
        load(bad)


def test_read_export(small_export: Path) -> None:
    w = read_export(small_export)
    assert w.architecture == "resnet18" and w.num_classes == 3 and w.num_features == 512
    assert w.label_names == ("Atelectasis", "Effusion", "Mass") and w.preprocess == SMALL
    assert w.dira["variant"] == "moco" and not w.has_decoder and w.decoder_state is None
    assert read_export(small_export, states=False).model_state is None


# --- the Hub path, offline, against a hand-made cache ---------------------------------------------


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_hf_cache(cache: Path, repo_id: str, revision: str, folder: Path, files: list[str]) -> Path:
    """Lay ``files`` of ``folder`` out as huggingface_hub's cache does; returns the snapshot folder."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    snapshot = storage / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in files:
        data = (folder / name).read_bytes()
        # LFS files (weights) are stored under their sha256, small git files under their git blob sha1
        etag = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else _git_blob_sha1(data)
        (storage / "blobs" / etag).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", etag))
    (storage / "refs" / "main").write_text(revision)  # no trailing newline, as huggingface_hub writes it
    return snapshot


@pytest.fixture()
def hub_cache(tmp_path: Path, small_export: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Weights]:
    cache = tmp_path / "hf-cache"
    make_hf_cache(cache, REPO, REVISION, small_export, ["config.json", "model.safetensors", "README.md"])
    record = weights_record(
        small_export, name="tiny_test_model", repo_id=REPO, revision=REVISION, description="test record"
    )
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, record.name: record})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache, record


def test_weights_record_pins_every_file(hub_cache, small_export: Path) -> None:
    _, record = hub_cache
    assert record.published and record.revision == REVISION and record.hub_id == REPO
    assert record.sha256["model.safetensors"] == sha256_file(small_export / "model.safetensors")
    assert record.file_names == ("config.json", "model.safetensors", "README.md")
    assert record.num_classes == 3 and record.label_names == ("Atelectasis", "Effusion", "Mass")
    assert record.transforms() == SMALL and record.variant == "moco" and record.stage == "finetuned"


def test_registry_record_loads_offline_from_the_cache(hub_cache, small_model) -> None:
    cache, record = hub_cache
    model = load(record.name, cache_dir=cache)
    assert _same_outputs(model, small_model)
    assert label_names_for(model) == ("Atelectasis", "Effusion", "Mass")
    assert model.pretrained_cfg["hf_hub_id"] == REPO + "@" + REVISION


def test_hf_hub_source_loads_offline_from_the_cache(hub_cache, small_model) -> None:
    cache, _ = hub_cache
    assert _same_outputs(load(f"hf-hub:{REPO}", cache_dir=cache), small_model)  # refs/main -> snapshot
    assert _same_outputs(load(f"hf-hub:{REPO}@{REVISION}", cache_dir=cache), small_model)
    # plain timm reads the same cache the same way
    plain = timm.create_model(f"hf-hub:{REPO}", pretrained=True, cache_dir=cache)
    assert _same_outputs(plain, small_model)


def test_cached_files_need_no_network_even_when_online(hub_cache, small_model, monkeypatch) -> None:
    cache, record = hub_cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def boom(*a, **k):
        raise AssertionError("network touched")

    monkeypatch.setattr(socket, "create_connection", boom)
    assert _same_outputs(load(record.name, cache_dir=cache), small_model)


def _blob_of(cache: Path, name: str) -> Path:
    return (cache / ("models--" + REPO.replace("/", "--")) / "snapshots" / REVISION / name).resolve()


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_tampered_cache_file_is_refused(hub_cache, name: str) -> None:
    cache, record = hub_cache
    blob = _blob_of(cache, name)
    data = bytearray(blob.read_bytes())
    data[-2] ^= 0xFF  # one flipped byte
    blob.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=f"sha256 mismatch for {name}.*delete") as info:
        load(record.name, cache_dir=cache)
    assert "\n" not in str(info.value)


def test_record_pinned_to_an_uncached_revision_offline(hub_cache, small_export, monkeypatch) -> None:
    cache, record = hub_cache
    other = dataclasses.replace(record, name="tiny_other", revision="f" * 40)
    monkeypatch.setitem(registry._REGISTRY, other.name, other)
    with pytest.raises(
        WeightsError, match=r"not in the Hugging Face cache.*HF_HUB_OFFLINE.*hf download"
    ) as info:
        load("tiny_other", cache_dir=cache)
    message = str(info.value)
    assert REPO in message and "f" * 40 in message and "local export folder" in message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_network_and_no_cache_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    with pytest.raises(
        WeightsError, match=r"cannot reach the Hub.*not in the Hugging Face cache.*hf download"
    ) as info:
        load("hf-hub:dira-test/not-cached", cache_dir=tmp_path / "empty-cache")
    assert time.perf_counter() - start < 5, "no retry loop"
    assert "dira-test/not-cached@main" in str(info.value)


def test_unpublished_record_explains_what_to_do() -> None:
    with pytest.raises(WeightsError, match="not published yet") as info:
        load("dira_barlowtwins_chestxray14")
    message = str(info.value)
    for hint in ("python -m training.pretrain", "dira-zoo convert", "dira-zoo push", "local export folder"):
        assert hint in message


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError, match="Did you mean dira_simsiam_chestxray14"):
        load("dira_simsiam_chestxray")


# --- push ----------------------------------------------------------------------------------------


class _FakeApi:
    calls: list[tuple[str, tuple, dict]] = []

    def __init__(self, *args, **kwargs) -> None:
        _FakeApi.calls.append(("init", args, kwargs))

    def create_repo(self, *args, **kwargs):
        _FakeApi.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, *args, **kwargs):
        _FakeApi.calls.append(("upload_folder", args, kwargs))

        class Info:
            oid = "c" * 40

        return Info()


def test_push_creates_the_repo_and_uploads_the_folder(small_export: Path, monkeypatch) -> None:
    import huggingface_hub

    _FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub, "check_connection", lambda *a, **k: None)
    commit = hub.push(small_export, "dira-zoo/tiny", private=True, token="hf_x")
    assert commit == "c" * 40
    calls = {name: (args, kwargs) for name, args, kwargs in _FakeApi.calls}
    assert calls["init"][1]["token"] == "hf_x"
    args, kwargs = calls["create_repo"]
    assert args == ("dira-zoo/tiny",) and kwargs["exist_ok"] is True and kwargs["private"] is True
    _, kwargs = calls["upload_folder"]
    assert kwargs["repo_id"] == "dira-zoo/tiny" and kwargs["folder_path"] == str(small_export)
    assert set(kwargs["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}


def test_push_offline_and_unreachable_fail_fast(small_export: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        hub.push(small_export, "dira-zoo/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="unreachable"):
        hub.push(small_export, "dira-zoo/tiny")
    assert time.perf_counter() - start < 5
    with pytest.raises(WeightsError, match="org/name"):
        hub.push(small_export, "not a repo")
    with pytest.raises(WeightsError, match="not a dira-zoo/timm export folder"):
        hub.push(tmp_path, "dira-zoo/tiny")


def test_check_connection_reports_refused_port() -> None:
    problem = hub.check_connection(f"http://127.0.0.1:{_closed_port()}", timeout=1)
    assert problem and "127.0.0.1" in problem


def test_env_is_restored() -> None:
    # conftest keeps tests offline; the monkeypatched tests above must not leak their settings
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def _hub_error(cls, status: int):
    import httpx2

    response = httpx2.Response(status, request=httpx2.Request("HEAD", "https://hub.test/x"))
    return cls(f"{status} Client Error", response=response)


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        ("RepositoryNotFoundError", 404, "no such model repository.*HF_TOKEN"),
        ("RevisionNotFoundError", 404, "has no revision 'v9'"),
        ("RemoteEntryNotFoundError", 404, "has no config.json: not a dira-zoo/timm export"),
        ("GatedRepoError", 403, "gated"),
        ("HfHubHTTPError", 500, "downloading config.json of org/repo@v9 failed: 500"),
    ],
)
def test_hub_errors_become_one_line(
    tmp_path: Path, monkeypatch, error: str, status: int, expected: str
) -> None:
    import huggingface_hub
    from huggingface_hub import errors

    def fake_download(repo_id, filename, *, local_files_only=False, **kwargs):
        if local_files_only:
            raise errors.LocalEntryNotFoundError("not cached")
        raise _hub_error(getattr(errors, error), status)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "check_connection", lambda *a, **k: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(WeightsError, match=expected) as info:
        load("hf-hub:org/repo@v9", cache_dir=tmp_path)
    assert "\n" not in str(info.value)
