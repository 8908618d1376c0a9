"""The embedded default model: it ships in the package, loads offline with verified checksums, and
``dira-localize`` with no ``--model`` turns the real reference radiographs into valid outputs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

import dira_zoo
from dira_zoo.errors import ChecksumError
from dira_zoo.hub import sha256_file
from dira_zoo.io import read_image
from dira_zoo.registry import DEFAULT_MODEL, EMBEDDED_ROOT, get_weights, register

PHANTOM_FINDINGS = ("Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax")
SAMPLES = EMBEDDED_ROOT.parent / "samples"
MAX_BYTES = 25 * 1024 * 1024


def test_the_default_is_the_embedded_phantom_model():
    assert DEFAULT_MODEL == "dira_phantom_resnet10t"
    w = get_weights(DEFAULT_MODEL)
    assert w.embedded == DEFAULT_MODEL and w.published and w.stage == "finetuned"
    assert w.architecture == "resnet10t" and w.label_names == PHANTOM_FINDINGS
    folder = EMBEDDED_ROOT / w.embedded
    for name, digest in w.files:  # the record pins exactly what ships
        assert sha256_file(folder / name) == digest


def test_loads_offline_by_name(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = dira_zoo.load(DEFAULT_MODEL)
    assert model.num_classes == len(PHANTOM_FINDINGS)
    assert tuple(model.pretrained_cfg["label_names"]) == PHANTOM_FINDINGS


def test_an_altered_embedded_file_is_refused():
    w = get_weights(DEFAULT_MODEL)
    files = tuple((n, "0" * 64 if n == "model.safetensors" else d) for n, d in w.files)
    register(dataclasses.replace(w, name="test_default_model_tampered", files=files))
    with pytest.raises(ChecksumError, match="sha256 mismatch for model.safetensors"):
        dira_zoo.load("test_default_model_tampered")


def test_the_shipped_export_is_small():
    folder = EMBEDDED_ROOT / get_weights(DEFAULT_MODEL).embedded
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert 0 < total <= MAX_BYTES
    card = (folder / "README.md").read_text()
    assert "not for clinical use" in card and "synthetic" in card
    assert "$" not in card.split("```")[0]  # every placeholder of the card template was filled


def test_samples_are_phantoms_with_boxes_inside_them():
    listing = json.loads((SAMPLES / "samples.json").read_text())["samples"]
    assert len(listing) >= 4
    for sample in listing:
        image = cv2.imread(str(SAMPLES / sample["file"]), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 2
        height, width = image.shape
        for box in sample["boxes"]:
            x, y, w, h = box["box"]
            assert box["finding"] in PHANTOM_FINDINGS
            assert min(x, y) >= 0 and x + w <= width and y + h <= height and w > 0 and h > 0


def test_dira_localize_default_on_real_radiographs(real_cxr: Path, tmp_path: Path):
    inputs = sorted(p for p in real_cxr.iterdir() if p.suffix.lower() in (".png", ".dcm"))
    assert [p.suffix.lower() for p in inputs].count(".dcm") == 2 and len(inputs) == 4
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dira_zoo.localize_cli", *map(str, inputs), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for path in inputs:
        height, width = read_image(path).original_size
        overlay = cv2.imread(str(tmp_path / f"{path.stem}_heatmap.png"), cv2.IMREAD_COLOR)
        assert overlay is not None and overlay.shape == (height, width, 3)
        record = json.loads((tmp_path / f"{path.stem}.json").read_text())
        assert record["model"] == DEFAULT_MODEL
        assert (record["image"]["width"], record["image"]["height"]) == (width, height)
        assert 1 <= len(record["findings"]) <= 3  # the CLI's default top-k
        for finding in record["findings"]:
            assert finding["name"] in PHANTOM_FINDINGS and 0.0 <= finding["probability"] <= 1.0
            for b in finding["boxes"]:
                assert 0 <= b["x0"] < b["x1"] <= width and 0 <= b["y0"] < b["y1"] <= height
