"""``dira-localize``: outputs per image, the table, --json, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from dira_zoo import localize_cli
from dira_zoo.localize_cli import Options, main, run
from dira_zoo.models import create_classifier
from dira_zoo.transforms import Preprocess

LABELS = ["Cardiomegaly", "Effusion", "Mass"]
GOOD = ["00000001_000.png", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = create_classifier("resnet18", num_classes=len(LABELS))
    m.pretrained_cfg = {**m.pretrained_cfg, "label_names": LABELS, "input_size": [3, 64, 64], "crop_pct": 1.0}
    return m.eval()


@pytest.fixture()
def folder(real_cxr: Path, tmp_path: Path) -> Path:
    """Two real images and four broken files."""
    d = tmp_path / "in"
    d.mkdir()
    for name in GOOD:
        shutil.copy(real_cxr / name, d / name)
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("not an image")
    data = (real_cxr / "00027426_000.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 3])
    (d / "header_only.dcm").write_bytes(b"\0" * 128 + b"DICM")
    return d


def _outputs(out: Path, stem: str) -> tuple[np.ndarray, dict]:
    png = cv2.imread(str(out / f"{stem}_heatmap.png"), cv2.IMREAD_UNCHANGED)
    record = json.loads((out / f"{stem}.json").read_text())
    return png, record


def test_folder_run_processes_good_files_and_names_the_bad(
    model: nn.Module, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    paths = sorted(p for p in folder.iterdir())
    status = run(model, paths, Options(model_name="toy", out=out, top_k=2, batch_size=2))
    assert status == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("dira-localize: error:")]
    assert "dira-localize: 4 of 6 images failed:" in captured.err
    assert len(errors) == 4
    for name, problem in [
        ("empty.png", "empty"),
        ("notes.png", "not a supported image"),
        ("cut.png", "truncated PNG"),
        ("header_only.dcm", "DICOM"),
    ]:
        assert any(str(folder / name) in e and problem in e for e in errors), (name, errors)
    # good files: an overlay at the original size and the record
    png, record = _outputs(out, "00000001_000")
    assert png.shape == (512, 512, 3)
    assert record["model"] == "toy" and record["method"] == "gradcam"
    assert record["image"] == {"path": str(folder / GOOD[0]), "width": 512, "height": 512}
    assert len(record["findings"]) == 2
    assert set(record["versions"]) == {"dira_zoo", "torch", "timm", "grad_cam"}
    dcm_png, dcm_record = _outputs(out, Path(GOOD[1]).stem)
    assert dcm_png.shape == (1024, 1024, 3) and dcm_record["image"]["width"] == 1024
    for f in dcm_record["findings"]:
        for b in f["boxes"]:
            assert 0 <= b["x0"] < b["x1"] <= 1024 and 0 <= b["y0"] < b["y1"] <= 1024
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}{suffix}" for s in ("00000001_000", Path(GOOD[1]).stem) for suffix in (".json", "_heatmap.png")]
    )
    # the table: one row per image and finding
    rows = captured.out.strip().splitlines()
    assert rows[0].split() == ["image", "finding", "probability", "boxes"] and len(rows) == 1 + 2 * 2


def test_json_flag_prints_records_and_findings(
    model: nn.Module, real_cxr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = Options(model_name="toy", out=tmp_path, findings=("mass",), json_stdout=True, threshold=0.3)
    assert run(model, [real_cxr / GOOD[0]], opts) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert [f["name"] for f in record["findings"]] == ["Mass"]
    assert record["threshold"] == 0.3 and record["findings"][0]["boxes"]
    assert record == json.loads((tmp_path / "00000001_000.json").read_text())


def test_same_stems_in_two_folders_do_not_overwrite(model: nn.Module, real_cxr: Path, tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(real_cxr / GOOD[0], tmp_path / sub / "x.png")
    out = tmp_path / "out"
    assert run(model, [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], Options("toy", out=out)) == 0
    assert {p.name for p in out.glob("*.json")} == {"x.json", "x_2.json"}
    assert json.loads((out / "x_2.json").read_text())["image"]["path"] == str(tmp_path / "b" / "x.png")


def test_no_model_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], real_cxr: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dira_zoo import registry

    monkeypatch.setattr(registry, "DEFAULT_MODEL", None)  # an installation without a default model
    assert localize_cli.main([str(real_cxr / GOOD[0])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model" in err[0] and err[0].startswith("dira-localize: error:")


@pytest.fixture(scope="module")
def export_folder(model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dira_zoo.hub import export

    folder = tmp_path_factory.mktemp("export") / "toy"
    return export(model, folder, label_names=LABELS, preprocess=Preprocess(input_size=(3, 64, 64)))


def test_main_with_an_export_folder(
    export_folder: Path, real_cxr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = [str(real_cxr / GOOD[0]), "--model", str(export_folder), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--top-k", "1", "--method", "gradcam++"]) == 0
    png, record = _outputs(out, "00000001_000")
    assert png.shape == (512, 512, 3)
    assert record["model"] == str(export_folder) and record["method"] == "gradcam++"
    assert len(record["findings"]) == 1 and record["findings"][0]["name"] in LABELS
    assert "00000001_000" in capsys.readouterr().out


def test_main_bad_inputs_exit_2_with_one_line_each(
    export_folder: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--model", str(export_folder), "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert main([str(folder / "notes.png"), *base]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"dira-localize: error: {folder / 'notes.png'}: not a supported image (PNG, JPEG, TIFF or DICOM)"
    ]
    # a missing input does not stop the others
    assert main([str(tmp_path / "nope.png"), str(folder / GOOD[0]), *base]) == 2
    captured = capsys.readouterr()
    assert "no such file or folder" in captured.err and (tmp_path / "o" / "00000001_000.json").exists()
    assert main([str(folder / GOOD[0]), *base, "--finding", "Hernia"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown finding 'Hernia'" in err[0]
    assert main([str(folder / GOOD[0]), *base, "--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err
