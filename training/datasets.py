"""Data set readers with one contract: ``[i] -> (grey float32 H×W in [0, 1], labels float32 C)``.

As in torchxrayvision, a label that is not known is NaN (losses mask it), so folders without labels,
partial label files and full ChestX-ray14 all look the same to training code. Decoding goes through
:func:`dira_zoo.io.read_image`.

ChestX-ray14 is read in the layout a real download has (and :mod:`training.phantom` writes):

- ``images/*.png`` (also ``images_001/images/…`` as the archives unpack);
- ``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv`` (optionally ``.gz``): labels ``|``-separated,
  ``No Finding`` → all zeros, patient ids; its header has commas inside brackets, so columns are
  taken by position;
- official split lists ``train_val_list.txt`` / ``test_list.txt`` (one image name per line) and DiRA's
  ``Xray14_{train,val,test}_official.txt`` (``<name> <14 labels 0/1>`` in
  :data:`~dira_zoo.registry.CHESTXRAY14_LABELS` order).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dira_zoo.errors import DiraZooError
from dira_zoo.io import find_images, read_image
from dira_zoo.registry import CHESTXRAY14_LABELS

from .nih_format import DATA_ENTRY_NAMES, DIRA_SPLITS, NO_FINDING, OFFICIAL_SPLITS

SPLITS = ("train", "val", "test", "trainval")
#: Share of the train/val list held out for validation when DiRA's split files are absent
#: (their val file holds ≈13 % of the train/val images, patient-wise).
VAL_FRACTION = 0.13
VAL_SEED = 0


class DatasetError(DiraZooError):
    """A data set folder or file that cannot be read as asked."""


class XrayDataset:
    """Images with (possibly unknown) labels. Works as a map-style ``torch.utils.data.Dataset``."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: np.ndarray | None = None,
        label_names: Sequence[str] = (),
        patient_ids: np.ndarray | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.label_names = tuple(label_names)
        if labels is None:
            labels = np.full((len(self.paths), len(self.label_names)), np.nan, np.float32)
        self.labels = np.asarray(labels, dtype=np.float32).reshape(len(self.paths), len(self.label_names))
        self.patient_ids = None if patient_ids is None else np.asarray(patient_ids, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return read_image(self.paths[index]).pixels, self.labels[index]

    def subset(self, indices: Sequence[int] | np.ndarray) -> XrayDataset:
        """The same data set restricted to ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        pids = None if self.patient_ids is None else self.patient_ids[idx]
        return XrayDataset([self.paths[i] for i in idx], self.labels[idx], self.label_names, pids)

    def __repr__(self) -> str:
        known = int(np.isfinite(self.labels).all(axis=1).sum()) if self.labels.size else 0
        return f"XrayDataset({len(self)} images, {len(self.label_names)} labels, {known} fully labelled)"


@dataclass(frozen=True)
class DataEntry:
    """The rows of ``Data_Entry_2017*.csv`` that matter for training, in file order."""

    names: list[str]
    findings: list[tuple[str, ...]]
    patient_ids: np.ndarray
    follow_ups: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def labels(self, label_names: Sequence[str] = CHESTXRAY14_LABELS) -> np.ndarray:
        """N × C 0/1 labels (``No Finding`` rows are all zeros; other findings are ignored)."""
        column = {name: j for j, name in enumerate(label_names)}
        out = np.zeros((len(self.names), len(label_names)), np.float32)
        for i, findings in enumerate(self.findings):
            for f in findings:
                if f in column:
                    out[i, column[f]] = 1.0
        return out


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_data_entry(path: str | Path) -> DataEntry:
    """Read NIH's image index (``.csv`` or ``.csv.gz``); columns by position, as the header is ragged."""
    path = Path(path)
    names, findings, pids, follow = [], [], [], []
    try:
        with _open_text(path) as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if not header or header[0].strip() != "Image Index":
                raise DatasetError(
                    f"{path}: not a ChestX-ray14 data-entry file (first column is not 'Image Index')"
                )
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                try:
                    names.append(row[0].strip())
                    labels = tuple(
                        s.strip() for s in row[1].split("|") if s.strip() and s.strip() != NO_FINDING
                    )
                    findings.append(labels)
                    follow.append(int(row[2]))
                    pids.append(int(row[3]))
                except (IndexError, ValueError):
                    raise DatasetError(
                        f"{path}: line {line} is not a data-entry row: {','.join(row)[:80]}"
                    ) from None
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from None
    return DataEntry(names, findings, np.array(pids, np.int64), np.array(follow, np.int64))


def read_split_file(path: str | Path, n_labels: int | None = None) -> tuple[list[str], np.ndarray | None]:
    """Image names of a split list, plus the labels when the lines carry them (DiRA's format).

    Returns ``(names, labels)``; ``labels`` is None for plain lists (``train_val_list.txt``).
    """
    path = Path(path)
    names: list[str] = []
    rows: list[list[float]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        names.append(parts[0])
        if len(parts) > 1:
            try:
                rows.append([float(x) for x in parts[1:]])
            except ValueError:
                raise DatasetError(f"{path}: line {line_no} has non-numeric labels: {line[:80]}") from None
    if not rows:
        return names, None
    widths = {len(r) for r in rows}
    if len(rows) != len(names) or len(widths) != 1:
        raise DatasetError(f"{path}: lines carry different numbers of labels ({sorted(widths)})")
    if n_labels is not None and widths != {n_labels}:
        raise DatasetError(f"{path}: lines carry {widths.pop()} labels, expected {n_labels}")
    return names, np.array(rows, np.float32)


def find_data_entry(root: str | Path) -> Path | None:
    """The data-entry file under ``root``, if any (v2020 preferred)."""
    for name in DATA_ENTRY_NAMES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def patient_split(
    patient_ids: np.ndarray, fraction: float = VAL_FRACTION, seed: int = VAL_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split image indices patient-wise: about ``fraction`` of the images go to the second part.

    Patients are shuffled with ``seed`` and taken until the share is reached, so no patient is in both
    parts and the split depends only on the ids and the seed.
    """
    pids = np.asarray(patient_ids)
    patients, counts = np.unique(pids, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(patients))
    taken = np.cumsum(counts[order]) <= round(fraction * len(pids))
    held = set(patients[order][taken].tolist())
    second = np.array([p in held for p in pids.tolist()], bool)
    return np.flatnonzero(~second), np.flatnonzero(second)


def chestxray14(
    root: str | Path,
    split: str | None = "train",
    *,
    split_file: str | Path | None = None,
    data_entry: str | Path | None = None,
    label_names: Sequence[str] = CHESTXRAY14_LABELS,
    skip_missing: bool = False,
) -> XrayDataset:
    """ChestX-ray14 (or a phantom set in its layout) as an :class:`XrayDataset`.

    ``split``: ``train``/``val``/``test`` use DiRA's split files when present; otherwise ``train`` and
    ``val`` are a patient-wise split (:func:`patient_split`) of ``train_val_list.txt``, ``trainval`` is
    that whole list and ``test`` is ``test_list.txt``. ``None`` means every row of the data entry.
    ``split_file`` overrides ``split`` with any list in either format. Labels come from the split file
    when it carries them, else from the data entry (NaN for images it does not list).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such data set folder")
    label_names = tuple(label_names)
    entry_path = Path(data_entry) if data_entry else find_data_entry(root)
    entry = read_data_entry(entry_path) if entry_path else None

    names, file_labels = _split_names(root, split, split_file, entry)
    if file_labels is not None:
        labels = _select_columns(file_labels, label_names, split_file or root)
    elif entry is not None:
        rows = entry.index()
        all_labels = entry.labels(label_names)
        labels = np.full((len(names), len(label_names)), np.nan, np.float32)
        for i, name in enumerate(names):
            if name in rows:
                labels[i] = all_labels[rows[name]]
    else:
        labels = None
    paths = _locate(root, names)
    missing = [n for n, p in zip(names, paths, strict=True) if p is None]
    if missing and not skip_missing:
        raise DatasetError(
            f"{root}: {len(missing)} of {len(names)} listed images are not under images/ "
            f"(first: {missing[0]}); pass skip_missing=True to use the ones present"
        )
    keep = [i for i, p in enumerate(paths) if p is not None]
    labels = None if labels is None else labels[keep]
    return XrayDataset([paths[i] for i in keep], labels, label_names, _patient_ids(names, entry)[keep])


def _split_names(
    root: Path, split: str | None, split_file: str | Path | None, entry: DataEntry | None
) -> tuple[list[str], np.ndarray | None]:
    if split_file is not None:
        return read_split_file(split_file)
    if split is None:
        if entry is None:
            return sorted(p.name for p in find_images(_image_dirs(root))), None
        return list(entry.names), None
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or None")
    if split in DIRA_SPLITS and (root / DIRA_SPLITS[split]).is_file():
        return read_split_file(root / DIRA_SPLITS[split], len(CHESTXRAY14_LABELS))
    if split == "trainval" and all((root / DIRA_SPLITS[s]).is_file() for s in ("train", "val")):
        parts = [read_split_file(root / DIRA_SPLITS[s], len(CHESTXRAY14_LABELS)) for s in ("train", "val")]
        return parts[0][0] + parts[1][0], np.concatenate([parts[0][1], parts[1][1]])
    listed = OFFICIAL_SPLITS["test" if split == "test" else "trainval"]
    if not (root / listed).is_file():
        wanted = f"{DIRA_SPLITS[split]} or {listed}" if split in DIRA_SPLITS else listed
        raise DatasetError(f"{root}: split {split!r} needs {wanted}")
    names, _ = read_split_file(root / listed)
    if split in ("train", "val"):
        train, val = patient_split(_patient_ids(names, entry))
        names = [names[i] for i in (train if split == "train" else val)]
    return names, None


def _select_columns(labels: np.ndarray, label_names: tuple[str, ...], where: object) -> np.ndarray:
    """Columns of DiRA-format labels (CHESTXRAY14_LABELS order) for the requested names."""
    if label_names == CHESTXRAY14_LABELS:
        return labels
    column = {name: j for j, name in enumerate(CHESTXRAY14_LABELS)}
    unknown = [n for n in label_names if n not in column]
    if unknown:
        raise DatasetError(f"{where}: labels {unknown} are not ChestX-ray14 labels")
    return labels[:, [column[n] for n in label_names]]


def _patient_ids(names: Sequence[str], entry: DataEntry | None) -> np.ndarray:
    """Patient ids from the data entry, else from the NIH file name (``<patient>_<follow-up>.png``)."""
    rows = entry.index() if entry is not None else {}
    out = np.empty(len(names), np.int64)
    for i, name in enumerate(names):
        if name in rows:
            out[i] = entry.patient_ids[rows[name]]
            continue
        try:
            out[i] = int(Path(name).stem.split("_")[0])
        except ValueError:
            out[i] = -1 - i  # not a NIH name: every image is its own patient
    return out


def _image_dirs(root: Path) -> list[Path]:
    return [d for d in [root / "images", *sorted(root.glob("images_*/images"))] if d.is_dir()]


def _locate(root: Path, names: Sequence[str]) -> list[Path | None]:
    """Paths of the named images (None where missing), looked up in every image folder."""
    dirs = _image_dirs(root)
    if not dirs:
        raise DatasetError(f"{root}: no images/ folder (expected the ChestX-ray14 layout)")
    present: dict[str, Path] = {}
    for d in dirs:
        for p in d.iterdir():
            present.setdefault(p.name, p)
    return [present.get(n) for n in names]


def image_folder(root: str | Path, label_names: Sequence[str] = ()) -> XrayDataset:
    """Every image under ``root`` (recursive; PNG, JPEG, TIFF, DICOM), labels unknown (NaN)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such image folder")
    paths = find_images([root])
    if not paths:
        raise DatasetError(f"{root}: no images found (PNG, JPEG, TIFF or DICOM)")
    return XrayDataset(paths, None, label_names)
