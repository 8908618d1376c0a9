"""Scoring localization and classification: ground-truth boxes, IoU/IoBB, Acc@T, pointing game, AUC.

Box files are read as users have them: ChestX-ray14's ``BBox_List_2017.csv`` (gzipped or not; its
header splits ``Bbox [x,y,w,h]`` over four columns, the finding is spelled ``Infiltrate``, coordinates
are in 1024×1024 pixels) and COCO-style JSON (TBX11K). Coordinates are rescaled to the size of the
image actually evaluated, since copies of ChestX-ray14 are often downsampled.

The protocol follows Wang et al., "ChestX-ray8", CVPR 2017 (section 4.2): a ground-truth box counts as
localized at threshold T when some predicted box of the same image and finding overlaps it with
IoU > T or, as the paper's main table does, IoBB > T — the intersection over the *predicted* box's
area ("intersection over the detected B-Box area ratio"). The average false positives (AFP) count,
per image, the predicted boxes that overlap no ground truth at T. The pointing game (Zhang et al.,
ECCV 2016) asks whether the heat map's maximum falls inside a ground-truth box.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import DiraZooError

#: ChestX-ray14's box file spells one finding differently from its label list.
FINDING_ALIASES = {"Infiltrate": "Infiltration"}
#: The paper's thresholds T(IoBB).
THRESHOLDS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75)
#: BBox_List_2017 coordinates refer to the original 1024×1024 images.
NIH_REFERENCE_SIZE = (1024, 1024)
METRICS = ("iobb", "iou")

XYXY = tuple[float, float, float, float]
Key = tuple[str, str]  # (image file name, finding)


class GroundTruthBox(NamedTuple):
    """One annotated box: ``x, y, w, h`` in the pixels of a ``reference_size`` (height, width) image."""

    image: str
    finding: str
    x: float
    y: float
    w: float
    h: float
    reference_size: tuple[int, int]

    def xyxy(self, size: tuple[int, int] | None = None) -> XYXY:
        """``(x0, y0, x1, y1)``, rescaled to an image of ``size`` (height, width) when given."""
        sy, sx = (
            (1.0, 1.0)
            if size is None
            else (size[0] / self.reference_size[0], size[1] / self.reference_size[1])
        )
        return self.x * sx, self.y * sy, (self.x + self.w) * sx, (self.y + self.h) * sy


def canonical_finding(name: str) -> str:
    return FINDING_ALIASES.get(name, name)


def read_bbox_list(
    path: str | Path, *, reference_size: tuple[int, int] = NIH_REFERENCE_SIZE
) -> list[GroundTruthBox]:
    """``BBox_List_2017.csv[.gz]`` as distributed; ``Infiltrate`` is canonicalised to ``Infiltration``."""
    path = Path(path)
    text = _read_text(path)
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header or [h.strip() for h in header[:2]] != ["Image Index", "Finding Label"]:
        raise DiraZooError(
            f"{path}: not a BBox_List file (expected the header 'Image Index,Finding Label,Bbox …')"
        )
    boxes = []
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 6 or any(cell.strip() for cell in row[6:]):
            raise DiraZooError(f"{path}:{line}: expected image, finding, x, y, w, h; got {len(row)} columns")
        try:
            x, y, w, h = (float(v) for v in row[2:6])
        except ValueError:
            raise DiraZooError(f"{path}:{line}: box coordinates are not numbers: {row[2:6]}") from None
        if w <= 0 or h <= 0:
            raise DiraZooError(f"{path}:{line}: box has no area (w={w}, h={h})")
        boxes.append(
            GroundTruthBox(row[0].strip(), canonical_finding(row[1].strip()), x, y, w, h, reference_size)
        )
    return boxes


def read_coco_boxes(path: str | Path) -> list[GroundTruthBox]:
    """COCO-style ``{"images", "annotations", "categories"}`` (TBX11K); ``image`` is the ``file_name``."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
        images = {img["id"]: img for img in data["images"]}
        categories = {cat["id"]: cat["name"] for cat in data["categories"]}
        boxes = []
        for ann in data["annotations"]:
            img = images[ann["image_id"]]
            x, y, w, h = (float(v) for v in ann["bbox"])
            size = (int(img["height"]), int(img["width"]))
            boxes.append(GroundTruthBox(img["file_name"], categories[ann["category_id"]], x, y, w, h, size))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DiraZooError(f"{path}: not valid JSON ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DiraZooError(f"{path}: not a COCO box file (missing or bad {exc})") from None
    return boxes


def read_boxes(path: str | Path) -> list[GroundTruthBox]:
    """A BBox_List CSV or a COCO JSON, told apart by the suffix."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if ".json" in suffixes:
        return read_coco_boxes(path)
    return read_bbox_list(path)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DiraZooError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DiraZooError(f"{path}: corrupt or not text ({exc})") from None


def group_boxes(
    boxes: Iterable[GroundTruthBox], sizes: Mapping[str, tuple[int, int]] | None = None
) -> dict[Key, list[XYXY]]:
    """``(image, finding) → [(x0, y0, x1, y1), …]``, rescaled to ``sizes[image]`` where given."""
    grouped: dict[Key, list[XYXY]] = defaultdict(list)
    for box in boxes:
        size = sizes.get(box.image) if sizes is not None else None
        grouped[(box.image, box.finding)].append(box.xyxy(size))
    return dict(grouped)


# --- overlap -------------------------------------------------------------------------------------


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _intersection(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def iobb(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Intersection over the *predicted* box's area (Wang et al. 2017): 1 when it lies inside the truth."""
    area = _area(predicted)
    return _intersection(predicted, truth) / area if area > 0 else 0.0


def _overlap(metric: str, predicted: Sequence[float], truth: Sequence[float]) -> float:
    return iobb(predicted, truth) if metric == "iobb" else iou(predicted, truth)


# --- localization metrics ------------------------------------------------------------------------


def localization_accuracy(
    predictions: Mapping[Key, Sequence[Sequence[float]]],
    truths: Mapping[Key, Sequence[Sequence[float]]],
    thresholds: Sequence[float] = THRESHOLDS,
    metric: str = "iobb",
) -> dict[str, dict[str, Any]]:
    """Acc@T and AFP@T per finding and over all (``"all"``), for every ground-truth ``(image, finding)``.

    Acc: ground-truth boxes hit by a predicted box (overlap > T) / ground-truth boxes.
    AFP: predicted boxes that hit no ground-truth box, per evaluated (image, finding).
    Missing predictions count as misses.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    hits: dict[str, list[list[bool]]] = defaultdict(list)  # finding -> per gt box, per threshold
    false_pos: dict[str, list[list[int]]] = defaultdict(list)  # finding -> per key, per threshold
    for key, gts in truths.items():
        preds = predictions.get(key, ())
        table = [[_overlap(metric, p, g) for g in gts] for p in preds]  # preds × gts
        for j in range(len(gts)):
            hits[key[1]].append([any(row[j] > t for row in table) for t in thresholds])
        false_pos[key[1]].append([sum(not any(v > t for v in row) for row in table) for t in thresholds])
    report: dict[str, dict[str, Any]] = {}
    for finding in sorted(hits):
        report[finding] = _summary(hits[finding], false_pos[finding], thresholds)
    report["all"] = _summary(
        [h for v in hits.values() for h in v], [f for v in false_pos.values() for f in v], thresholds
    )
    return report


def _summary(
    hits: list[list[bool]], false_pos: list[list[int]], thresholds: Sequence[float]
) -> dict[str, Any]:
    h = np.asarray(hits, dtype=float).reshape(-1, len(thresholds))
    f = np.asarray(false_pos, dtype=float).reshape(-1, len(thresholds))
    return {
        "boxes": int(h.shape[0]),
        "acc": {str(t): float(h[:, i].mean()) if h.size else math.nan for i, t in enumerate(thresholds)},
        "afp": {str(t): float(f[:, i].mean()) if f.size else math.nan for i, t in enumerate(thresholds)},
    }


def heatmap_peak(heatmap: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` of the centre of the hottest pixel."""
    y, x = np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape)
    return x + 0.5, y + 0.5


def pointing_game(
    heatmaps: Mapping[Key, np.ndarray | tuple[float, float]],
    truths: Mapping[Key, Sequence[Sequence[float]]],
    *,
    tolerance: float = 0.0,
) -> dict[str, float]:
    """Share of ``(image, finding)`` whose heat-map maximum lies in (or within ``tolerance`` px of) a box.

    Values are heat maps in the boxes' pixel frame, or their peaks ``(x, y)`` (:func:`heatmap_peak`), which
    is what to keep when scoring many full-resolution maps. Per finding and ``"all"``.
    """
    results: dict[str, list[bool]] = defaultdict(list)
    for key, gts in truths.items():
        value = heatmaps.get(key)
        hit = False
        if isinstance(value, np.ndarray) and value.size and np.isfinite(value).any():
            value = heatmap_peak(value)
        if isinstance(value, tuple):
            x, y = value
            hit = any(
                b[0] - tolerance <= x <= b[2] + tolerance and b[1] - tolerance <= y <= b[3] + tolerance
                for b in gts
            )
        results[key[1]].append(hit)
    report = {finding: float(np.mean(v)) for finding, v in sorted(results.items())}
    report["all"] = float(np.mean([h for v in results.values() for h in v])) if results else math.nan
    return report


# --- classification ------------------------------------------------------------------------------


def per_class_auc(
    y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str] | None = None
) -> dict[str, float]:
    """ROC AUC per column; NaN labels (unknown) are ignored; NaN when a column has one class only.

    Mann-Whitney U with average ranks for ties, so it equals scikit-learn's ``roc_auc_score``.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None]
    if y_true.shape != y_score.shape:
        raise ValueError(f"labels {y_true.shape} and scores {y_score.shape} differ in shape")
    names = list(labels) if labels is not None else [str(i) for i in range(y_true.shape[1])]
    if len(names) != y_true.shape[1]:
        raise ValueError(f"{len(names)} label names for {y_true.shape[1]} columns")
    return {name: _auc(y_true[:, k], y_score[:, k]) for k, name in enumerate(names)}


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    known = ~np.isnan(truth)
    truth, score = truth[known] > 0.5, score[known]
    pos, neg = int(truth.sum()), int((~truth).sum())
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[truth].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


# --- dira-zoo evaluate-localization --------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``dira-zoo evaluate-localization``."""
    from .localize import METHODS, PRECISIONS

    parser.add_argument(
        "--model", required=True, help="registry name, hf-hub:org/name, export folder or weights file"
    )
    parser.add_argument("--images", required=True, type=Path, help="folder holding the annotated images")
    parser.add_argument("--boxes", required=True, type=Path, help="BBox_List_2017.csv[.gz] or a COCO JSON")
    parser.add_argument("--out", type=Path, default=Path("localization_eval.json"), help="JSON report path")
    parser.add_argument("--method", default="gradcam", choices=list(METHODS))
    parser.add_argument("--threshold", type=float, default=0.5, help="box threshold on the normalised map")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: where the model loads)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="evaluate the first N images only"
    )


def run_evaluate(args: argparse.Namespace) -> int:
    """Localize every annotated image found under ``--images``, score, print a table, write JSON."""
    from .hub import load

    boxes = read_boxes(args.boxes)
    model = load(args.model, device=args.device)
    report = evaluate_model(
        model,
        boxes,
        args.images,
        method=args.method,
        threshold=args.threshold,
        batch_size=args.batch_size,
        precision=args.precision,
        limit=args.limit,
    )
    report = {"model": str(args.model), "boxes_file": str(args.boxes), **report}
    print(format_report(report))
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DiraZooError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {args.out}")
    return 0


def evaluate_model(
    model: Any,
    boxes: Sequence[GroundTruthBox],
    images_dir: str | Path,
    *,
    method: str = "gradcam",
    threshold: float = 0.5,
    batch_size: int = 8,
    precision: str = "fp32",
    limit: int | None = None,
) -> dict[str, Any]:
    """Localize the annotated findings the model knows on every image found, and score them."""
    from tqdm.auto import tqdm

    from .io import read_image
    from .localize import label_names_for, localize

    labels = {name.lower(): name for name in label_names_for(model)}
    usable = [b for b in boxes if b.finding.lower() in labels]
    if not usable:
        found = sorted({b.finding for b in boxes})
        raise DiraZooError(
            f"none of the box file's findings ({', '.join(found)}) is a label of the model "
            f"({', '.join(labels.values())})"
        )
    per_image: dict[str, list[str]] = defaultdict(list)
    for b in usable:
        name = labels[b.finding.lower()]
        if name not in per_image[b.image]:
            per_image[b.image].append(name)
    locations, missing = _locate(list(per_image), Path(images_dir))
    if not locations:
        raise DiraZooError(f"{images_dir}: none of the {len(per_image)} annotated images is there")
    names = sorted(locations)[:limit] if limit else sorted(locations)
    truths_by_label = [b._replace(finding=labels[b.finding.lower()]) for b in usable if b.image in locations]
    sizes: dict[str, tuple[int, int]] = {}
    predictions: dict[Key, list[XYXY]] = {}
    peaks: dict[Key, tuple[float, float]] = {}
    unreadable: list[str] = []
    with tqdm(total=len(names), desc="evaluate", unit="image") as bar:
        for start in range(0, len(names), batch_size):
            chunk, images = [], []
            for name in names[start : start + batch_size]:
                try:
                    images.append(read_image(locations[name]))
                    chunk.append(name)
                except DiraZooError as exc:
                    unreadable.append(str(exc))
            if images:
                # one trunk pass for the batch; CAMs for the union of its findings (cheap), kept per image
                wanted = list(dict.fromkeys(f for name in chunk for f in per_image[name]))
                results = localize(
                    model,
                    images,
                    wanted,
                    method=method,
                    threshold=threshold,
                    batch_size=batch_size,
                    precision=precision,
                )
                for name, result in zip(chunk, results, strict=True):
                    sizes[name] = result.original_size
                    for finding in result.findings:
                        if finding.name in per_image[name]:
                            predictions[(name, finding.name)] = [tuple(b[:4]) for b in finding.boxes]
                            peaks[(name, finding.name)] = heatmap_peak(finding.heatmap)
            bar.update(len(names[start : start + batch_size]))
    truths = group_boxes((b for b in truths_by_label if b.image in sizes), sizes)
    return {
        "method": method,
        "threshold": threshold,
        "images": len(sizes),
        "images_missing": len(missing),
        "images_unreadable": unreadable,
        "boxes": sum(len(v) for v in truths.values()),
        "iobb": localization_accuracy(predictions, truths, metric="iobb"),
        "iou": localization_accuracy(predictions, truths, metric="iou"),
        "pointing_game": pointing_game(peaks, truths),
    }


def _locate(names: Sequence[str], root: Path) -> tuple[dict[str, Path], list[str]]:
    """Find each annotated file under ``root``: at its relative path, else by file name anywhere below."""
    if not root.is_dir():
        raise DiraZooError(f"{root}: not a folder")
    by_name: dict[str, Path] | None = None
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        direct = root / name
        if direct.is_file():
            found[name] = direct
            continue
        if by_name is None:
            by_name = {}
            for p in sorted(root.rglob("*")):
                by_name.setdefault(p.name, p)
        match = by_name.get(Path(name).name)
        if match is not None and match.is_file():
            found[name] = match
        else:
            missing.append(name)
    return found, missing


def format_report(report: Mapping[str, Any]) -> str:
    """A fixed-width table: boxes, Acc@T(IoBB), Acc@T(IoU) and the pointing game per finding."""
    iobb, iou_, pointing = report["iobb"], report["iou"], report["pointing_game"]
    ts = list(iobb["all"]["acc"])
    head = ["finding", "boxes", *(f"IoBB>{t}" for t in ts), *(f"IoU>{t}" for t in ts), "pointing"]
    rows = [head]
    for finding in iobb:
        accs = [iobb[finding]["acc"][t] for t in ts] + [iou_[finding]["acc"][t] for t in ts]
        cells = [f"{v:.3f}" for v in [*accs, pointing.get(finding, math.nan)]]
        rows.append([finding, str(iobb[finding]["boxes"]), *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    summary = f"{report['images']} images, {report['boxes']} boxes"
    if report.get("images_missing"):
        summary += f" ({report['images_missing']} annotated images not found)"
    if report.get("images_unreadable"):
        summary += f" ({len(report['images_unreadable'])} unreadable)"
    return "\n".join([*lines, summary])
