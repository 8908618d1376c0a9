"""Dataset readers: the real NIH metadata file, a tiny ChestX-ray14 layout, and plain image folders."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dira_zoo.errors import DiraZooError
from dira_zoo.registry import CHESTXRAY14_LABELS
from training.datasets import (
    DatasetError,
    XrayDataset,
    chestxray14,
    image_folder,
    patient_split,
    read_data_entry,
    read_split_file,
)
from training.nih_format import DATA_ENTRY_HEADER, DIRA_SPLITS, OFFICIAL_SPLITS


@pytest.fixture(scope="module")
def real_entry(nih_metadata: Path):
    return read_data_entry(nih_metadata / "Data_Entry_2017_v2020.csv.gz")


def test_real_data_entry(real_entry, nih_metadata):
    assert len(real_entry) == 112_120
    with gzip.open(nih_metadata / "Data_Entry_2017_v2020.csv.gz", "rt") as f:
        assert f.readline().rstrip("\n") == DATA_ENTRY_HEADER
    labels = real_entry.labels()
    assert labels.shape == (112_120, 14) and labels.dtype == np.float32
    col = {name: j for j, name in enumerate(CHESTXRAY14_LABELS)}
    first = real_entry.index()["00000001_001.png"]  # Cardiomegaly|Emphysema, patient 1, follow-up 1
    assert set(np.flatnonzero(labels[first])) == {col["Cardiomegaly"], col["Emphysema"]}
    assert real_entry.patient_ids[first] == 1 and real_entry.follow_ups[first] == 1
    normal = real_entry.index()["00000002_000.png"]  # No Finding
    assert real_entry.findings[normal] == () and not labels[normal].any()
    # class totals of the official index (Infiltration most frequent, Hernia rarest)
    totals = dict(zip(CHESTXRAY14_LABELS, labels.sum(0).astype(int).tolist(), strict=True))
    assert totals["Infiltration"] == 19_894 and totals["Hernia"] == 227 and totals["Effusion"] == 13_317
    assert int((labels.sum(1) == 0).sum()) == 60_361  # "No Finding" rows
    assert len(np.unique(real_entry.patient_ids)) == 30_805
    # a label subset picks columns by name
    sub = real_entry.labels(("Hernia", "Cardiomegaly"))
    assert np.array_equal(sub, labels[:, [col["Hernia"], col["Cardiomegaly"]]])


def test_patient_split_on_real_ids(real_entry):
    train, val = patient_split(real_entry.patient_ids, 0.13, seed=0)
    assert len(train) + len(val) == 112_120
    assert not set(real_entry.patient_ids[train]) & set(real_entry.patient_ids[val])
    assert abs(len(val) / 112_120 - 0.13) < 0.002
    again = patient_split(real_entry.patient_ids, 0.13, seed=0)
    assert np.array_equal(val, again[1])
    assert not np.array_equal(val, patient_split(real_entry.patient_ids, 0.13, seed=1)[1])


@pytest.fixture
def tiny_root(tmp_path: Path, nih_metadata: Path) -> Path:
    """A ChestX-ray14 folder: the first 40 real index rows, small PNGs, official lists (gzipped index)."""
    root = tmp_path / "cxr14"
    (root / "images").mkdir(parents=True)
    with gzip.open(nih_metadata / "Data_Entry_2017_v2020.csv.gz", "rt") as f:
        lines = [f.readline() for _ in range(41)]
    with gzip.open(root / "Data_Entry_2017_v2020.csv.gz", "wt") as f:
        f.writelines(lines)
    names = [line.split(",")[0] for line in lines[1:]]
    rng = np.random.default_rng(0)
    for name in names:
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 256, (24, 32), dtype=np.uint8))
    pids = [int(n.split("_")[0]) for n in names]
    test = [n for n, p in zip(names, pids, strict=True) if p % 4 == 0]
    (root / OFFICIAL_SPLITS["test"]).write_text("\n".join(test) + "\n")
    (root / OFFICIAL_SPLITS["trainval"]).write_text("\n".join(n for n in names if n not in test) + "\n")
    return root


def test_chestxray14_official_lists_and_patient_wise_val(tiny_root: Path):
    trainval = chestxray14(tiny_root, split="trainval")
    train, val, test = (chestxray14(tiny_root, split=s) for s in ("train", "val", "test"))
    assert len(train) + len(val) == len(trainval) and len(test) > 0
    assert sorted(p.name for p in train.paths + val.paths) == sorted(p.name for p in trainval.paths)
    assert not set(train.patient_ids) & set(val.patient_ids)
    assert not set(trainval.patient_ids) & set(test.patient_ids)
    pixels, labels = test[0]
    assert pixels.dtype == np.float32 and pixels.shape == (24, 32) and labels.shape == (14,)
    everything = chestxray14(tiny_root, split=None)
    assert len(everything) == 40 and not np.isnan(everything.labels).any()
    i = [p.name for p in everything.paths].index("00000001_001.png")
    assert everything.labels[i, CHESTXRAY14_LABELS.index("Emphysema")] == 1


def test_chestxray14_prefers_dira_split_files_and_their_labels(tiny_root: Path):
    names = sorted(p.name for p in (tiny_root / "images").iterdir())
    labels = np.zeros((3, 14), int)
    labels[0, 13] = 1  # Hernia, whatever the index says
    (tiny_root / DIRA_SPLITS["train"]).write_text(
        "".join(f"{n} {' '.join(map(str, row))}\n" for n, row in zip(names[:3], labels, strict=True))
    )
    train = chestxray14(tiny_root, split="train")
    assert [p.name for p in train.paths] == names[:3]
    assert np.array_equal(train.labels, labels.astype(np.float32))
    picked = chestxray14(tiny_root, split="train", label_names=("Hernia", "Mass"))
    assert picked.label_names == ("Hernia", "Mass") and picked.labels[:, 0].tolist() == [1, 0, 0]
    with pytest.raises(DatasetError, match="not ChestX-ray14 labels"):
        chestxray14(tiny_root, split="train", label_names=("Tuberculosis",))


def test_chestxray14_split_file_without_index_gives_unknown_labels(tiny_root: Path, tmp_path: Path):
    (tiny_root / "Data_Entry_2017_v2020.csv.gz").unlink()
    listed = tmp_path / "mine.txt"
    listed.write_text("00000001_000.png\n\n00000003_001.png\n")
    data = chestxray14(tiny_root, split_file=listed)
    assert [p.name for p in data.paths] == ["00000001_000.png", "00000003_001.png"]
    assert np.isnan(data.labels).all() and data.patient_ids.tolist() == [1, 3]


def test_chestxray14_user_errors(tiny_root: Path):
    with pytest.raises(DatasetError, match="unknown split"):
        chestxray14(tiny_root, split="validation")
    missing = sorted((tiny_root / "images").iterdir())[0]
    missing.unlink()
    with pytest.raises(DatasetError, match=missing.name) as err:
        chestxray14(tiny_root, split=None)
    assert isinstance(err.value, DiraZooError) and "\n" not in str(err.value)
    assert len(chestxray14(tiny_root, split=None, skip_missing=True)) == 39
    (tiny_root / OFFICIAL_SPLITS["test"]).unlink()
    with pytest.raises(DatasetError, match="test_list.txt"):
        chestxray14(tiny_root, split="test")
    with pytest.raises(DatasetError, match="no such"):
        chestxray14(tiny_root / "nope")
    bad = tiny_root / "bad.txt"
    bad.write_text("a.png 0 1\nb.png 0\n")
    with pytest.raises(DatasetError, match="different numbers of labels"):
        read_split_file(bad)


def test_images_in_archive_folders_are_found(tiny_root: Path):
    part = tiny_root / "images_002" / "images"
    part.mkdir(parents=True)
    moved = sorted((tiny_root / "images").iterdir())[:5]
    for p in moved:
        shutil.move(p, part / p.name)
    data = chestxray14(tiny_root, split=None)
    assert len(data) == 40 and {p.parent for p in data.paths} == {tiny_root / "images", part}


def test_image_folder_reads_every_format(real_cxr: Path):
    data = image_folder(real_cxr, label_names=CHESTXRAY14_LABELS)
    suffixes = {p.suffix for p in data.paths}
    assert {".png", ".dcm"} <= suffixes and len(data) >= 7
    assert data.labels.shape == (len(data), 14) and np.isnan(data.labels).all()
    dicom = next(i for i, p in enumerate(data.paths) if p.suffix == ".dcm")
    pixels, labels = data[dicom]
    assert pixels.dtype == np.float32 and pixels.ndim == 2 and 0 <= pixels.min() < pixels.max() <= 1
    assert np.isnan(labels).all()
    assert image_folder(real_cxr).labels.shape == (len(data), 0)


def test_subset_keeps_everything_aligned():
    data = XrayDataset(
        [Path(f"{i}.png") for i in range(5)], np.eye(5, 2, dtype=np.float32), ("a", "b"), np.arange(5)
    )
    sub = data.subset([3, 0])
    assert [p.name for p in sub.paths] == ["3.png", "0.png"]
    assert sub.labels.tolist() == [[0, 0], [1, 0]] and sub.patient_ids.tolist() == [3, 0]
    assert sub.label_names == ("a", "b")
