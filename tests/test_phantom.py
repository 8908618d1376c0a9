"""Phantom data sets: the ChestX-ray14 layout, determinism, and boxes that really hold the findings."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest

from dira_zoo.evaluation import read_bbox_list
from training import phantom
from training.datasets import chestxray14, read_data_entry, read_split_file
from training.nih_format import BBOX_NAME, DATA_ENTRY_NAMES, DIRA_SPLITS, OFFICIAL_SPLITS
from training.phantom_render import ENLARGED_CTR, FINDINGS, Anatomy, render

SIZE = 96


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("phantom")
    cv2.setNumThreads(1)
    result = phantom.generate(30, out, SIZE, seed=3, masks="findings", progress=False)
    return out, result


def _first_row(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return next(csv.reader(f))


def test_layout_matches_the_real_chestxray14_files(phantom_set, nih_metadata):
    out, result = phantom_set
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(r.name for r, _ in result)
    for name in (*OFFICIAL_SPLITS.values(), *DIRA_SPLITS.values(), "phantom.json"):
        assert (out / name).is_file(), name
    # headers: the same columns as NIH's own files, commas inside brackets and empty columns included
    real_entry = nih_metadata / "Data_Entry_2017_v2020.csv.gz"
    assert _first_row(out / DATA_ENTRY_NAMES[0]) == _first_row(real_entry)
    assert _first_row(out / BBOX_NAME) == _first_row(nih_metadata / "BBox_List_2017.csv.gz")
    image = cv2.imread(str(out / "images" / result[0][0].name), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE)
    # every row parses like a real one; labels are the drawn findings, "No Finding" otherwise
    entry = read_data_entry(out / DATA_ENTRY_NAMES[0])
    assert entry.names == [r.name for r, _ in result]
    for (record, found), labels, pid in zip(result, entry.findings, entry.patient_ids, strict=True):
        assert set(labels) == {b.label for b in found}
        assert pid == record.patient_id
    assert any(not found for _, found in result) and any(found for _, found in result)


def test_splits_are_patient_wise_and_complete(phantom_set):
    out, result = phantom_set
    trainval, _ = read_split_file(out / OFFICIAL_SPLITS["trainval"])
    test, _ = read_split_file(out / OFFICIAL_SPLITS["test"])
    assert sorted(trainval + test) == sorted(r.name for r, _ in result)
    patient = {r.name: r.patient_id for r, _ in result}
    assert not {patient[n] for n in trainval} & {patient[n] for n in test}
    train, train_labels = read_split_file(out / DIRA_SPLITS["train"], 14)
    val, _ = read_split_file(out / DIRA_SPLITS["val"], 14)
    assert sorted(train + val) == sorted(trainval)
    assert not {patient[n] for n in train} & {patient[n] for n in val}
    assert train_labels.shape == (len(train), 14)


def test_same_seed_same_files_with_any_worker_count(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    phantom.generate(6, a, 64, seed=5, progress=False)
    phantom.generate(6, b, 64, seed=5, workers=2, progress=False)
    phantom.generate(6, c, 64, seed=6, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    name = sorted((a / "images").iterdir())[0].name
    assert (a / "images" / name).read_bytes() != (c / "images" / name).read_bytes()


def test_plan_is_a_prefix_and_about_half_no_finding():
    assert phantom.plan(7, seed=1) == phantom.plan(40, seed=1)[:7]
    records = phantom.plan(3000, seed=0)
    normal = np.mean([not r.labels for r in records])
    assert 0.45 < normal < 0.57
    for finding, p in phantom.DEFAULT_PREVALENCE.items():
        assert abs(np.mean([finding in r.labels for r in records]) - p) < 0.03
    per_patient = np.bincount([r.patient_id for r in records])[1:]
    assert per_patient.max() <= 5 and (per_patient > 1).any()


@pytest.mark.parametrize("finding", FINDINGS)
def test_box_holds_the_finding(finding):
    """The same image with and without the finding differs (almost) only inside the finding's box."""
    size, inside_share = 128, []
    for seed in range(4):
        anatomy = Anatomy.sample(np.random.default_rng([seed]), female=bool(seed % 2))
        plain = render(anatomy, np.random.default_rng([seed, 1]), size, ())
        sick = render(anatomy, np.random.default_rng([seed, 1]), size, (finding,))
        assert [b.label for b in sick.findings] == [finding]
        x, y, w, h = sick.findings[0].box
        assert x >= 0 and y >= 0 and x + w <= size and y + h <= size and w > 0 and h > 0
        diff = sick.pixels.astype(float) - plain.pixels.astype(float)
        box = (
            slice(max(0, int(y) - 2), int(np.ceil(y + h)) + 2),
            slice(max(0, int(x) - 2), int(np.ceil(x + w)) + 2),
        )
        inside_share.append(np.abs(diff[box]).sum() / np.abs(diff).sum())
        # lucency darkens, every other finding adds density
        assert (diff[box].sum() < 0) == (finding == "Pneumothorax")
    assert min(inside_share) > 0.85, inside_share


def test_cardiomegaly_box_spans_the_enlarged_cardiothoracic_ratio():
    for seed in range(3):
        anatomy = Anatomy.sample(np.random.default_rng([seed]), female=False)
        p = render(anatomy, np.random.default_rng([seed, 1]), 256, ("Cardiomegaly",), with_masks=True)
        columns = np.flatnonzero(p.lungs.any(axis=0))
        thorax = columns[-1] - columns[0] + 1
        assert ENLARGED_CTR[0] - 0.03 < p.findings[0].box[2] / thorax < ENLARGED_CTR[1] + 0.05


def test_readers_and_evaluator_read_the_phantom_unchanged(phantom_set):
    out, result = phantom_set
    by_name = {r.name: (r, found) for r, found in result}
    total = 0
    for split in ("train", "val", "test"):
        data = chestxray14(out, split=split)
        total += len(data)
        for path, labels, pid in zip(data.paths, data.labels, data.patient_ids, strict=True):
            record, found = by_name[path.name]
            assert record.split == split and pid == record.patient_id
            expected = {b.label for b in found}
            assert {n for n, v in zip(data.label_names, labels, strict=True) if v == 1} == expected
    assert total == len(result)
    assert len(chestxray14(out, split="trainval")) == sum(r.split != "test" for r, _ in result)
    pixels, labels = chestxray14(out, split=None)[0]
    assert (
        pixels.dtype == np.float32 and pixels.shape == (SIZE, SIZE) and 0 <= pixels.min() < pixels.max() <= 1
    )
    boxes = read_bbox_list(out / BBOX_NAME, reference_size=(SIZE, SIZE))
    expected = sorted((r.name, b.label, *b.box) for r, found in result for b in found)
    assert sorted((b.image, b.finding, b.x, b.y, b.w, b.h) for b in boxes) == expected


def test_masks_cover_the_boxes(phantom_set):
    out, result = phantom_set
    for record, found in result:
        mask = cv2.imread(str(out / "masks" / record.name), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 255}
        assert mask.any() == bool(found)
        for b in found:
            x, y, w, h = b.box
            inside = mask[int(y) : int(np.ceil(y + h)) + 1, int(x) : int(np.ceil(x + w)) + 1]
            assert inside.any()


def test_cli_writes_a_set_and_reports_user_errors(tmp_path, capsys):
    assert phantom.main(["--n", "3", "--out", str(tmp_path / "s"), "--size", "64", "--masks"]) == 0
    assert len(list((tmp_path / "s" / "masks").iterdir())) == 3
    assert phantom.main(["--n", "3", "--out", str(tmp_path / "s"), "--size", "64"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert phantom.main(["--n", "2", "--out", str(tmp_path / "t"), "--prevalence", "Hernia=0.5"]) == 2
    assert "Hernia" in capsys.readouterr().err
