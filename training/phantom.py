"""Chest-radiograph phantom data sets in the exact ChestX-ray14 layout, with ground-truth boxes.

``python -m training.phantom --n 1000 --out DIR [--size 512] [--seed 0] [--workers 2] [--masks findings]``

writes::

    DIR/images/00000001_000.png …          8-bit grey, size × size
    DIR/Data_Entry_2017_v2020.csv          NIH header; labels "|"-separated or "No Finding"; patient ids
    DIR/BBox_List_2017.csv                 NIH header and format; every finding's box in image pixels
    DIR/train_val_list.txt, test_list.txt  patient-wise official-style split lists
    DIR/Xray14_{train,val,test}_official.txt   DiRA-style split files (name + 14 labels)
    DIR/masks/…png                         with --masks: finding masks (or lung masks), 0/255
    DIR/phantom.json                       the parameters, for provenance

so every ChestX-ray14 reader, trainer and evaluator runs on it unchanged.

Parameters (see :func:`generate`): ``n`` images of ``size``² pixels; each image shows each finding of
:data:`~training.phantom_render.FINDINGS` independently with its ``prevalence`` (defaults below give
about half "No Finding"); patients have 1–``max_follow_ups`` images that share their anatomy;
``test_fraction`` / ``val_fraction`` of the patients form the test / validation splits. The anatomy,
pose, exposure, noise and finding parameters are documented in :mod:`training.phantom_render`.

Everything is seeded per (seed, image index) and per (seed, patient), so any number of workers, or a
larger ``n``, gives the same images for the same indices.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dira_zoo.cli import run_guarded
from dira_zoo.errors import DiraZooError

from .nih_format import (
    BBOX_HEADER,
    BBOX_NAME,
    DATA_ENTRY_HEADER,
    DATA_ENTRY_NAMES,
    DIRA_SPLITS,
    NO_FINDING,
    OFFICIAL_SPLITS,
)
from .phantom_render import FINDINGS, Anatomy, FindingBox, render

#: Probability that an image shows each finding (independently): ≈ 51 % "No Finding".
DEFAULT_PREVALENCE: Mapping[str, float] = {
    "Cardiomegaly": 0.12,
    "Effusion": 0.15,
    "Mass": 0.1,
    "Nodule": 0.15,
    "Pneumothorax": 0.1,
}
MASK_KINDS = ("findings", "lungs")
# "up" filtering + Huffman-only deflate: the fastest of OpenCV's PNG settings here, and the smallest on noise
_PNG_OPTIONS = [
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_UP,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]
_FIELD_OF_VIEW_MM = 380.0
_GOLDEN = (math.sqrt(5) - 1) / 2  # pixel spacing = field of view / size


class PhantomError(DiraZooError):
    """Phantom generation asked for something it cannot do."""


@dataclass(frozen=True)
class ImageRecord:
    """One planned image: identity, metadata and split (its findings are known once it is drawn)."""

    index: int
    patient_id: int
    follow_up: int
    age: int
    gender: str
    view: str
    split: str  # train | val | test
    labels: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.patient_id:08d}_{self.follow_up:03d}.png"


def plan(
    n: int,
    seed: int = 0,
    *,
    prevalence: Mapping[str, float] = DEFAULT_PREVALENCE,
    max_follow_ups: int = 5,
    test_fraction: float = 0.2,
    val_fraction: float = 0.13,
) -> list[ImageRecord]:
    """Patients, follow-ups, labels and splits of the first ``n`` images (a prefix of any larger plan)."""
    unknown = set(prevalence) - set(FINDINGS)
    if unknown:
        raise PhantomError(f"unknown findings {sorted(unknown)}; phantoms show {', '.join(FINDINGS)}")
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise PhantomError("test_fraction and val_fraction must be in [0, 1) and sum to less than 1")
    records: list[ImageRecord] = []
    patient = 0
    start = np.random.default_rng([seed, 4]).random()
    while len(records) < n:
        patient += 1
        prng = np.random.default_rng([seed, 0, patient])
        count = int(prng.integers(1, max_follow_ups + 1))
        female, age = bool(prng.random() < 0.45), int(prng.integers(18, 86))
        # a golden-ratio sequence spreads the splits evenly: even a few patients fill every split
        r = (start + patient * _GOLDEN) % 1.0
        split = "test" if r < test_fraction else "val" if r < test_fraction + val_fraction else "train"
        for follow_up in range(min(count, n - len(records))):
            index = len(records)
            irng = np.random.default_rng([seed, 1, index])
            labels = tuple(f for f in FINDINGS if irng.random() < prevalence.get(f, 0.0))
            view = "AP" if irng.random() < 0.3 else "PA"
            records.append(
                ImageRecord(
                    index,
                    patient,
                    follow_up,
                    age + follow_up // 2,
                    "F" if female else "M",
                    view,
                    split,
                    labels,
                )
            )
    return records


def draw(record: ImageRecord, seed: int, size: int, *, with_masks: bool = False):
    """Render one planned image (deterministic in ``seed``, the patient and the index)."""
    female = record.gender == "F"
    anatomy = Anatomy.sample(np.random.default_rng([seed, 2, record.patient_id]), female)
    return render(
        anatomy, np.random.default_rng([seed, 3, record.index]), size, record.labels, with_masks=with_masks
    )


def _draw_and_write(job: tuple[ImageRecord, int, int, str, str | None]) -> tuple[int, list[FindingBox]]:
    record, seed, size, out, masks = job
    phantom = draw(record, seed, size, with_masks=masks is not None)
    out_dir = Path(out)
    _write_png(out_dir / "images" / record.name, phantom.pixels)
    if masks == "lungs":
        _write_png(out_dir / "masks" / record.name, phantom.lungs)
    elif masks == "findings":
        union = np.zeros((size, size), bool)
        for m in phantom.masks.values():
            union |= m
        _write_png(out_dir / "masks" / record.name, union)
    return record.index, phantom.findings


def _write_png(path: Path, image: np.ndarray) -> None:
    pixels = image.astype(np.uint8) * 255 if image.dtype == bool else image
    if not cv2.imwrite(str(path), pixels, _PNG_OPTIONS):
        raise PhantomError(f"{path}: cannot be written")


def _init_worker() -> None:
    cv2.setNumThreads(1)  # the processes share the cores


def _draw_all(jobs: Sequence[tuple], workers: int) -> Iterator[tuple[int, list[FindingBox]]]:
    if workers <= 1:
        yield from map(_draw_and_write, jobs)
        return
    # spawn, not fork: a forked OpenCV thread pool can deadlock; this module's imports are light
    ctx = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        yield from pool.map(_draw_and_write, jobs, chunksize=max(1, min(32, len(jobs) // (4 * workers))))


def generate(
    n: int,
    out_dir: str | Path,
    size: int = 512,
    seed: int = 0,
    *,
    workers: int = 1,
    masks: str | None = None,
    prevalence: Mapping[str, float] = DEFAULT_PREVALENCE,
    max_follow_ups: int = 5,
    test_fraction: float = 0.2,
    val_fraction: float = 0.13,
    overwrite: bool = False,
    progress: bool = True,
) -> list[tuple[ImageRecord, list[FindingBox]]]:
    """Write ``n`` phantoms and their metadata in the ChestX-ray14 layout under ``out_dir``.

    ``masks``: None, ``"findings"`` (union of the findings' masks, empty for "No Finding") or
    ``"lungs"``, written as ``masks/<image name>``. Returns every record with its drawn findings.
    """
    if n < 1:
        raise PhantomError(f"n must be at least 1, got {n}")
    if size < 64:
        raise PhantomError(f"size must be at least 64 pixels, got {size}")
    if masks not in (None, *MASK_KINDS):
        raise PhantomError(f"masks must be one of {', '.join(MASK_KINDS)}, not {masks!r}")
    out = Path(out_dir)
    images = out / "images"
    if images.is_dir() and any(images.iterdir()) and not overwrite:
        raise PhantomError(f"{images} is not empty; choose another --out or pass --overwrite")
    records = plan(
        n,
        seed,
        prevalence=prevalence,
        max_follow_ups=max_follow_ups,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
    )
    images.mkdir(parents=True, exist_ok=True)
    if masks:
        (out / "masks").mkdir(exist_ok=True)
    jobs = [(r, seed, size, str(out), masks) for r in records]
    findings: dict[int, list[FindingBox]] = {}
    for index, found in tqdm(
        _draw_all(jobs, workers), total=n, desc="phantoms", unit="img", disable=not progress
    ):
        findings[index] = found
    result = [(r, findings[r.index]) for r in records]
    _write_metadata(out, result, size)
    parameters = {
        "generator": "training.phantom",
        "n": n,
        "size": size,
        "seed": seed,
        "masks": masks,
        "prevalence": dict(prevalence),
        "max_follow_ups": max_follow_ups,
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
    }
    (out / "phantom.json").write_text(json.dumps(parameters, indent=2) + "\n")
    return result


def _write_metadata(out: Path, result: list[tuple[ImageRecord, list[FindingBox]]], size: int) -> None:
    """The data entry, box list and split files, in NIH's and DiRA's formats."""
    from dira_zoo.registry import CHESTXRAY14_LABELS  # here: the registry imports torch

    spacing = round(_FIELD_OF_VIEW_MM / size, 4)
    with open(out / DATA_ENTRY_NAMES[0], "w", newline="") as f:
        f.write(DATA_ENTRY_HEADER + "\n")
        writer = csv.writer(f, lineterminator="\n")
        for r, found in result:
            labels = "|".join(sorted({b.label for b in found})) or NO_FINDING
            writer.writerow(
                [
                    r.name,
                    labels,
                    r.follow_up,
                    r.patient_id,
                    r.age,
                    r.gender,
                    r.view,
                    size,
                    size,
                    spacing,
                    spacing,
                ]
            )
    with open(out / BBOX_NAME, "w", newline="") as f:
        f.write(BBOX_HEADER + "\n")
        writer = csv.writer(f, lineterminator="\n")
        for r, found in result:
            for b in found:
                writer.writerow([r.name, b.label, *(repr(float(c)) for c in b.box)])
    by_split: dict[str, list[tuple[ImageRecord, list[FindingBox]]]] = {"train": [], "val": [], "test": []}
    for item in result:
        by_split[item[0].split].append(item)
    (out / OFFICIAL_SPLITS["trainval"]).write_text(
        "".join(f"{r.name}\n" for r, _ in by_split["train"] + by_split["val"])
    )
    (out / OFFICIAL_SPLITS["test"]).write_text("".join(f"{r.name}\n" for r, _ in by_split["test"]))
    for split, filename in DIRA_SPLITS.items():
        lines = []
        for r, found in by_split[split]:
            present = {b.label for b in found}
            lines.append(
                " ".join([r.name, *("1" if name in present else "0" for name in CHESTXRAY14_LABELS)])
            )
        (out / filename).write_text("".join(line + "\n" for line in lines))


def _parse_prevalence(text: str) -> dict[str, float]:
    """``Nodule=0.2,Mass=0.1`` → a full prevalence mapping (unnamed findings keep their defaults)."""
    out = dict(DEFAULT_PREVALENCE)
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, value = item.partition("=")
        if name not in FINDINGS:
            raise PhantomError(f"--prevalence: unknown finding {name!r}; phantoms show {', '.join(FINDINGS)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise PhantomError(f"--prevalence: {item!r} is not NAME=PROBABILITY") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.phantom",
        description="Write chest-radiograph phantoms with known findings in the ChestX-ray14 layout.",
    )
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes drawing images (default 1)")
    parser.add_argument(
        "--masks",
        nargs="?",
        const="findings",
        choices=MASK_KINDS,
        help="also write masks/ (default: findings)",
    )
    parser.add_argument("--prevalence", default="", help="e.g. Nodule=0.2,Mass=0.1 (others keep defaults)")
    parser.add_argument("--max-follow-ups", type=int, default=5)
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of patients in the test split"
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.13, help="share of patients in DiRA's val split"
    )
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    args = parser.parse_args(argv)

    def run() -> int:
        result = generate(
            args.n,
            args.out,
            args.size,
            args.seed,
            workers=args.workers,
            masks=args.masks,
            prevalence=_parse_prevalence(args.prevalence),
            max_follow_ups=args.max_follow_ups,
            test_fraction=args.test_fraction,
            val_fraction=args.val_fraction,
            overwrite=args.overwrite,
        )
        boxes = sum(len(found) for _, found in result)
        normal = sum(not found for _, found in result)
        print(f"wrote {len(result)} images ({normal} without findings, {boxes} boxes) to {args.out}")
        return 0

    return run_guarded(run, "phantom")


if __name__ == "__main__":
    sys.exit(main())
