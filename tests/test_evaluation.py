"""dira_zoo.evaluation: the real box files as distributed, metrics on hand-computed cases, AUC vs
scikit-learn, and ``dira-zoo evaluate-localization`` end to end."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dira_zoo.errors import DiraZooError
from dira_zoo.evaluation import (
    evaluate_model,
    format_report,
    group_boxes,
    heatmap_peak,
    iobb,
    iou,
    localization_accuracy,
    per_class_auc,
    pointing_game,
    read_bbox_list,
    read_boxes,
    read_coco_boxes,
)

from .cam_models import BrightLesionModel

TBX_LABELS = ["ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis"]


# --- the real files ------------------------------------------------------------------------------


def test_real_bbox_list_as_distributed(nih_metadata: Path) -> None:
    boxes = read_bbox_list(nih_metadata / "BBox_List_2017.csv.gz")
    assert len(boxes) == 984
    assert len({b.image for b in boxes}) == 880
    findings = {b.finding for b in boxes}
    assert len(findings) == 8 and "Infiltration" in findings and "Infiltrate" not in findings
    first = boxes[0]
    assert first.image == "00013118_008.png" and first.finding == "Atelectasis"
    assert (first.x, first.y, first.w, first.h) == pytest.approx(
        (225.0847, 547.0192, 86.7797, 79.1864), abs=1e-3
    )
    assert first.reference_size == (1024, 1024)
    assert all(b.x >= 0 and b.x + b.w <= 1024.5 and b.y >= 0 and b.y + b.h <= 1024.5 for b in boxes)
    assert read_boxes(nih_metadata / "BBox_List_2017.csv.gz") == boxes


def test_real_tbx11k_coco_boxes(real_cxr: Path) -> None:
    path = real_cxr / "tbx11k" / "annotations" / "TBX11K_train.json"
    boxes = read_coco_boxes(path)
    assert len(boxes) == 3 and {b.image for b in boxes} == {"tb/tb0005.png", "tb/tb0007.png"}
    assert boxes[0].finding == "ActiveTuberculosis" and boxes[0].reference_size == (512, 512)
    assert boxes[0].xyxy() == pytest.approx((381.834, 126.873, 422.071, 171.440), abs=1e-3)
    assert read_boxes(path) == boxes


def test_bad_box_files(tmp_path: Path) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(DiraZooError, match="not a BBox_List file"):
        read_bbox_list(bad)
    bad.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2,x,4\n")
    with pytest.raises(DiraZooError, match=r"b.csv:2: box coordinates are not numbers"):
        read_bbox_list(bad)
    js = tmp_path / "c.json"
    js.write_text('{"images": []}')
    with pytest.raises(DiraZooError, match="not a COCO box file"):
        read_coco_boxes(js)
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(
        gzip.compress(b"Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Infiltrate,0,0,512,256\n")
    )
    (box,) = read_bbox_list(gz)
    assert box.finding == "Infiltration"
    # rescaled to a 512-px copy of the 1024-px image
    assert group_boxes([box], {"a.png": (512, 512)}) == {("a.png", "Infiltration"): [(0, 0, 256, 128)]}


# --- metrics, hand-computed ----------------------------------------------------------------------


def test_iou_and_iobb() -> None:
    truth = (0, 0, 10, 10)
    inside = (2, 2, 4, 4)  # area 4, fully inside
    assert iobb(inside, truth) == 1.0  # intersection over the *predicted* area
    assert iou(inside, truth) == pytest.approx(4 / 100)
    half = (5, 0, 15, 10)  # overlaps half of the truth
    assert iou(half, truth) == pytest.approx(50 / 150)
    assert iobb(half, truth) == pytest.approx(0.5)
    assert iou((20, 20, 30, 30), truth) == 0.0 and iobb((20, 20, 30, 30), truth) == 0.0
    assert iobb((3, 3, 3, 9), truth) == 0.0  # degenerate prediction


def test_localization_accuracy_and_afp() -> None:
    truths = {
        ("a.png", "Mass"): [(0, 0, 10, 10)],
        ("b.png", "Mass"): [(0, 0, 10, 10), (50, 50, 60, 60)],
        ("c.png", "Nodule"): [(0, 0, 4, 4)],
    }
    predictions = {
        ("a.png", "Mass"): [(5, 0, 15, 10), (80, 80, 90, 90)],  # IoBB 0.5 / IoU 1/3, plus a false positive
        ("b.png", "Mass"): [(50, 50, 60, 60)],  # hits the second box exactly, misses the first
        # c.png: no prediction at all → a miss
    }
    acc = localization_accuracy(predictions, truths, thresholds=(0.25, 0.5), metric="iobb")
    assert acc["Mass"]["boxes"] == 3 and acc["Nodule"]["boxes"] == 1
    assert acc["Mass"]["acc"] == {
        "0.25": pytest.approx(2 / 3),
        "0.5": pytest.approx(1 / 3),
    }  # 0.5 is not > 0.5
    assert acc["Nodule"]["acc"] == {"0.25": 0.0, "0.5": 0.0}
    assert acc["all"]["acc"]["0.25"] == pytest.approx(2 / 4) and acc["all"]["boxes"] == 4
    # AFP per (image, finding): a.png has 1 FP at 0.25 and 2 at 0.5; b.png 0; c.png 0
    assert acc["Mass"]["afp"] == {"0.25": pytest.approx(0.5), "0.5": pytest.approx(1.0)}
    by_iou = localization_accuracy(predictions, truths, thresholds=(0.25, 0.5), metric="iou")
    assert by_iou["Mass"]["acc"]["0.25"] == pytest.approx(2 / 3) and by_iou["Mass"]["acc"][
        "0.5"
    ] == pytest.approx(1 / 3)
    default = localization_accuracy(predictions, truths)
    assert list(default["all"]["acc"]) == ["0.1", "0.25", "0.5", "0.75"]


def test_pointing_game() -> None:
    truths = {
        ("a", "Mass"): [(10, 10, 20, 20)],
        ("b", "Mass"): [(0, 0, 5, 5)],
        ("c", "Nodule"): [(0, 0, 5, 5)],
    }
    heat_a = np.zeros((32, 32), np.float32)
    heat_a[15, 12] = 1.0  # peak inside
    heat_b = np.zeros((32, 32), np.float32)
    heat_b[8, 8] = 1.0  # peak at (8.5, 8.5): outside (0..5), within a 4-px tolerance
    assert heatmap_peak(heat_a) == (12.5, 15.5)
    result = pointing_game({("a", "Mass"): heat_a, ("b", "Mass"): heat_b}, truths)
    assert result == {"Mass": 0.5, "Nodule": 0.0, "all": pytest.approx(1 / 3)}
    tolerant = pointing_game({("a", "Mass"): (12.5, 15.5), ("b", "Mass"): (8.5, 8.5)}, truths, tolerance=4)
    assert tolerant["Mass"] == 1.0


def test_per_class_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(float)
    scores = np.round(y * 0.4 + rng.random((200, 3)), 1)  # rounding makes ties
    y[rng.random((200, 3)) < 0.2] = np.nan  # unknown labels
    result = per_class_auc(y, scores, ["A", "B", "C"])
    for k, name in enumerate("ABC"):
        known = ~np.isnan(y[:, k])
        assert result[name] == pytest.approx(roc_auc_score(y[known, k], scores[known, k]), abs=1e-12)
    one_class = per_class_auc(np.ones(5), np.arange(5.0))
    assert math.isnan(one_class["0"])
    assert per_class_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))["0"] == 1.0


# --- end to end ----------------------------------------------------------------------------------


def test_evaluate_scales_1024_boxes_to_smaller_images(tmp_path: Path) -> None:
    # BBox_List format in 1024 px; the images on disk are 512 px copies with the lesion painted in.
    lines = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
    images = tmp_path / "images" / "sub"
    images.mkdir(parents=True)
    truth = {"x1.png": (200, 300, 240, 160), "x2.png": (600, 100, 200, 300)}
    for name, (x, y, w, h) in truth.items():
        lines.append(f"{name},Mass,{x},{y},{w},{h}")
        img = np.zeros((512, 512), np.uint8)
        img[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = 255
        cv2.imwrite(str(images / name), img)
    lines.append("absent.png,Mass,0,0,10,10")
    lines.append("x1.png,Nodule,0,0,10,10")  # not a label of the model: ignored
    boxes_file = tmp_path / "BBox_List_2017.csv"
    boxes_file.write_text("\n".join(lines) + "\n")
    report = evaluate_model(
        BrightLesionModel(["Mass", "Normal"]), read_boxes(boxes_file), tmp_path / "images", batch_size=2
    )
    assert report["images"] == 2 and report["images_missing"] == 1 and report["boxes"] == 2
    assert report["iobb"]["Mass"]["acc"] == {"0.1": 1.0, "0.25": 1.0, "0.5": 1.0, "0.75": 1.0}
    assert report["iou"]["Mass"]["acc"]["0.5"] == 1.0
    assert report["pointing_game"] == {"Mass": 1.0, "all": 1.0}
    table = format_report(report)
    assert table.splitlines()[0].split()[:3] == ["finding", "boxes", "IoBB>0.1"] and "Mass" in table
    with pytest.raises(DiraZooError, match="none of the box file's findings"):
        model = BrightLesionModel(["Cardiomegaly", "Normal"])
        evaluate_model(model, read_boxes(boxes_file), tmp_path / "images")


@pytest.fixture(scope="module")
def tbx_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dira_zoo.hub import export
    from dira_zoo.models import create_classifier
    from dira_zoo.transforms import Preprocess

    torch.manual_seed(0)
    model = create_classifier("resnet18", num_classes=3)
    folder = tmp_path_factory.mktemp("export") / "tbx"
    return export(model, folder, label_names=TBX_LABELS, preprocess=Preprocess(input_size=(3, 64, 64)))


def test_evaluate_localization_command_on_tbx11k(
    tbx_export: Path, real_cxr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dira_zoo.cli import zoo_main

    out = tmp_path / "eval.json"
    argv = [
        "evaluate-localization",
        "--model", str(tbx_export),
        "--images", str(real_cxr / "tbx11k" / "imgs"),
        "--boxes", str(real_cxr / "tbx11k" / "annotations" / "TBX11K_train.json"),
        "--out", str(out),
        "--device", "cpu",
    ]  # fmt: skip
    assert zoo_main(argv) == 0
    printed = capsys.readouterr().out
    assert "ActiveTuberculosis" in printed and "2 images, 3 boxes" in printed
    report = json.loads(out.read_text())
    assert report["model"] == str(tbx_export) and report["images"] == 2 and report["boxes"] == 3
    assert set(report["iobb"]) == {"ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "all"}
    for block in (report["iobb"], report["iou"]):
        assert all(0.0 <= v <= 1.0 for f in block.values() for v in f["acc"].values())
    assert 0.0 <= report["pointing_game"]["all"] <= 1.0
    # a wrong box file is one line, exit 2
    assert zoo_main([*argv[:5], "--boxes", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.csv" in err[0]
