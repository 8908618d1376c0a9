"""``dira-zoo``: list, info, convert, export, push, and the one-line error contract (exit 2, no traceback)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from dira_zoo.cli import EXIT_USER_ERROR, zoo_main
from dira_zoo.hub import export, read_export
from dira_zoo.models import UNet, create_classifier

PAPER_MODELS = ("dira_moco_chestxray14", "dira_barlowtwins_chestxray14", "dira_simsiam_chestxray14")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a fresh interpreter (what a user's shell runs)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dira_zoo.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dira-zoo: error: ")
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def unet_pth(tmp_path_factory: pytest.TempPathFactory) -> tuple[UNet, Path]:
    torch.manual_seed(0)
    net = UNet("resnet18").eval()
    path = tmp_path_factory.mktemp("official") / "best_checkpoint.pth"
    torch.save(net.state_dict(), path)  # the official flat U-Net layout
    return net, path


def test_list(capsys) -> None:
    assert zoo_main(["list"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.strip().splitlines()
    assert header.split()[:3] == ["name", "arch", "variant"]
    for name in PAPER_MODELS:
        row = next(r for r in rows if r.startswith(name))
        assert "resnet50" in row and "no (not pushed yet)" in row


def test_list_pattern_and_json(capsys) -> None:
    assert zoo_main(["list", "dira_moco*", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == ["dira_moco_chestxray14"]
    assert records[0]["hub_id"] == "dira-zoo/dira_moco_chestxray14"


def test_info(capsys) -> None:
    assert zoo_main(["info", "dira_simsiam_chestxray14"]) == 0
    out = capsys.readouterr().out
    assert "dira-zoo/dira_simsiam_chestxray14" in out and "simsiam" in out
    assert zoo_main(["info", "dira_simsiam_chestxray14", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["name"] == "dira_simsiam_chestxray14" and meta["published"] is False


def test_unknown_name_is_one_line_and_exit_2() -> None:
    proc = run_cli("info", "dira_moco_chestxray")
    assert proc.returncode == EXIT_USER_ERROR
    assert_one_line_error(
        proc.stderr, "unknown model 'dira_moco_chestxray'", "Did you mean dira_moco_chestxray14"
    )


def test_unpublished_model_export_is_one_line(tmp_path: Path, capsys) -> None:
    assert zoo_main(["export", "dira_moco_chestxray14", str(tmp_path / "out")]) == EXIT_USER_ERROR
    assert_one_line_error(capsys.readouterr().err, "not published yet", "dira-zoo convert")


def test_convert_then_info_and_timm(tmp_path: Path, unet_pth, capsys) -> None:
    net, pth = unet_pth
    out = tmp_path / "converted"
    assert zoo_main(["convert", str(pth), str(out), "--variant", "simsiam", "--epochs", "10"]) == 0
    assert "unet layout, resnet18" in capsys.readouterr().out
    exp = read_export(out)
    assert exp.architecture == "resnet18" and exp.num_classes == 0 and exp.has_decoder
    assert (
        exp.dira["variant"] == "simsiam"
        and exp.dira["layout"] == "unet"
        and len(exp.dira["source_sha256"]) == 64
    )
    assert zoo_main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "folder" and info["decoder"] is True and info["architecture"] == "resnet18"
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    want = net.state_dict()
    assert all(torch.equal(v, want[f"encoder.{k}"]) for k, v in model.state_dict().items())
    # converting onto an existing export needs --force
    assert zoo_main(["convert", str(pth), str(out)]) == EXIT_USER_ERROR
    assert "--force" in capsys.readouterr().err
    assert zoo_main(["convert", str(pth), str(out), "--force"]) == 0


def test_export_resizes_and_keeps_the_decoder(tmp_path: Path, unet_pth, capsys) -> None:
    _, pth = unet_pth
    out = tmp_path / "from-pth"
    assert zoo_main(["export", str(pth), str(out)]) == 0
    assert (out / "decoder.safetensors").is_file()
    resized = tmp_path / "resized"
    assert zoo_main(["export", str(out), str(resized), "--num-classes", "4", "--repo", "org/tiny"]) == 0
    exp = read_export(resized)
    assert exp.num_classes == 4 and exp.has_decoder and exp.dira["exported_from"] == str(out)
    assert "hf-hub:org/tiny" in (resized / "README.md").read_text()
    capsys.readouterr()


def test_export_with_custom_card(tmp_path: Path, capsys) -> None:
    src = export(create_classifier("resnet18", 0), tmp_path / "src")
    card = tmp_path / "card.md"
    card.write_text("# My model\n\nHand-written card.\n")
    assert zoo_main(["export", str(src), str(tmp_path / "out"), "--card", str(card)]) == 0
    text = (tmp_path / "out" / "README.md").read_text()
    assert text.startswith("---\nlicense: apache-2.0\n") and "Hand-written card." in text
    capsys.readouterr()


def test_push_offline_is_one_line(tmp_path: Path) -> None:
    src = export(create_classifier("resnet18", 0), tmp_path / "src")
    proc = run_cli("push", str(src), "--repo", "dira-zoo/tiny")
    assert proc.returncode == EXIT_USER_ERROR
    assert_one_line_error(proc.stderr, "HF_HUB_OFFLINE")


def test_bad_pth_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    proc = run_cli("convert", str(bad), str(tmp_path / "out"))
    assert proc.returncode == EXIT_USER_ERROR
    assert_one_line_error(proc.stderr, "not a readable PyTorch checkpoint")


def test_help_lists_every_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        zoo_main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "info", "convert", "export", "push", "evaluate-localization"):
        assert command in out


@pytest.mark.skipif(
    importlib.util.find_spec("dira_zoo.evaluation") is None, reason="dira_zoo.evaluation not there yet"
)
def test_evaluate_localization_is_wired(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        zoo_main(["evaluate-localization", "--help"])
    assert info.value.code == 0
    assert "evaluate-localization" in capsys.readouterr().out


def test_no_network_is_one_line_not_a_retry_loop(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HUB_CACHE": str(tmp_path / "c"),
    }
    proc = run_cli("export", "hf-hub:dira-test/absent", str(tmp_path / "out"), env=env)
    assert proc.returncode == EXIT_USER_ERROR
    assert_one_line_error(proc.stderr, "cannot reach the Hub", "dira-test/absent@main", "hf download")
    assert "Retrying" not in proc.stderr
