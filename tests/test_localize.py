"""dira_zoo.localize and dira_zoo.overlay: equality with pytorch-grad-cam's default use, boxes in original
pixels, bf16, hooks, threads, and the JSON record."""

from __future__ import annotations

import gc
import json
import os
import threading
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from dira_zoo.errors import DiraZooError
from dira_zoo.io import read_image
from dira_zoo.localize import (
    METHODS,
    boxes_from_map,
    label_names_for,
    localization_record,
    localize,
    preprocess_for,
)
from dira_zoo.models import create_classifier
from dira_zoo.overlay import render_overlay, render_result, save_png

from .cam_models import BrightLesionModel

LABELS = ["Atelectasis", "Effusion", "Nodule"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _resnet(size: int = 128, seed: int = 0, crop_pct: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_classifier("resnet18", num_classes=len(LABELS))
    model.pretrained_cfg = {
        **model.pretrained_cfg,
        "label_names": LABELS,
        "input_size": [3, size, size],
        "crop_pct": crop_pct,
    }
    return model.eval()


@pytest.fixture(scope="module")
def cxrs(real_cxr: Path) -> list[np.ndarray]:
    names = ["00000001_000.png", "00027426_000.png", "tbx11k/imgs/tb/tb0005.png"]
    return [read_image(real_cxr / n).pixels for n in names]


def _library_default(model: nn.Module, cam_class: type, x: torch.Tensor, classes: list[int]) -> np.ndarray:
    """pytorch-grad-cam as its README uses it: the whole model, target layer4."""
    with cam_class(model=model, target_layers=[model.layer4[-1]]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])


def _as_library_output(cam: np.ndarray, size: int) -> np.ndarray:
    """Our feature-resolution map, resized and re-normalised the way the library finishes its output."""
    return scale_cam_image(scale_cam_image(cam[None], (size, size)))[0]


@pytest.mark.parametrize(
    "method, cam_class",
    [
        ("gradcam", GradCAM),
        ("hirescam", HiResCAM),
        ("gradcam++", GradCAMPlusPlus),
        ("xgradcam", XGradCAM),
        ("layercam", LayerCAM),
        ("eigencam", EigenCAM),
    ],
)
def test_maps_equal_the_library_default_use(method: str, cam_class: type, cxrs: list[np.ndarray]) -> None:
    model = _resnet(size=128)
    results = localize(model, cxrs[:2], method=method)
    x = preprocess_for(model).batch(cxrs[:2])
    pairs = [(i, c) for i in range(2) for c in range(len(LABELS))]
    reference = _library_default(model, cam_class, x[[i for i, _ in pairs]], [c for _, c in pairs])
    ours = [f for r in results for f in r.findings]
    assert [(LABELS.index(f.name)) for f in ours] == [c for _, c in pairs]
    for finding, ref in zip(ours, reference, strict=True):
        assert finding.cam.shape == finding.raw.shape == (4, 4)  # feature resolution of 128 px
        mine = _as_library_output(finding.cam, 128)
        np.testing.assert_allclose(mine, ref, atol=2e-4)
        if ref.std() > 0:
            assert np.corrcoef(mine.ravel(), ref.ravel())[0, 1] > 0.999


def test_probabilities_are_sigmoid_of_the_model(cxrs: list[np.ndarray]) -> None:
    model = _resnet()
    results = localize(model, cxrs)
    with torch.no_grad():
        expected = torch.sigmoid(model(preprocess_for(model).batch(cxrs))).numpy()
    for result, row in zip(results, expected, strict=True):
        assert list(result.probabilities) == LABELS
        np.testing.assert_allclose(list(result.probabilities.values()), row, atol=1e-5)
        assert [f.probability for f in result.findings] == pytest.approx(list(row), abs=1e-5)


def test_folded_trunk_follows_weight_changes(cxrs: list[np.ndarray]) -> None:
    # The BatchNorm-folded trunk is cached per model; changing weights in place or moving the model
    # to channels_last must not serve stale activations.
    model = _resnet()
    localize(model, cxrs[0])
    with torch.no_grad():
        model.layer1[0].conv1.weight.mul_(0.5)
        model.bn1.running_var.mul_(4.0)
    model = model.to(memory_format=torch.channels_last)
    result = localize(model, cxrs[0])[0]
    with torch.no_grad():
        expected = torch.sigmoid(model(preprocess_for(model).batch(cxrs[:1])))[0].numpy()
    np.testing.assert_allclose(list(result.probabilities.values()), expected, atol=1e-5)


def test_each_image_gets_its_own_target(cxrs: list[np.ndarray]) -> None:
    model = _resnet()
    batched = localize(model, cxrs, batch_size=3)
    for image, together in zip(cxrs, batched, strict=True):
        alone = localize(model, [image])[0]
        for a, b in zip(alone.findings, together.findings, strict=True):
            np.testing.assert_allclose(a.cam, b.cam, atol=1e-5)
            np.testing.assert_allclose(a.raw, b.raw, rtol=1e-4, atol=1e-6)
    # and the images really differ, so equality above is not trivial
    assert not np.allclose(batched[0].findings[0].raw, batched[1].findings[0].raw)


def test_findings_and_top_k(cxrs: list[np.ndarray]) -> None:
    model = _resnet()
    everything = localize(model, cxrs[:2])
    top = localize(model, cxrs[:2], top_k=1)
    for full, best in zip(everything, top, strict=True):
        probs = full.probabilities
        assert [f.name for f in best.findings] == [max(probs, key=probs.get)]
    chosen = localize(model, cxrs[0], findings=["nodule", "Effusion"])[0]
    assert [f.name for f in chosen.findings] == ["Nodule", "Effusion"]
    with pytest.raises(DiraZooError, match="unknown finding 'Hernia'"):
        localize(model, cxrs[0], findings=["Hernia"])
    with pytest.raises(DiraZooError, match="unknown CAM method"):
        localize(model, cxrs[0], method="magic")


def test_labels_fall_back_to_class_indices() -> None:
    model = create_classifier("resnet18", num_classes=2)
    assert label_names_for(model) == ("class_0", "class_1")
    with pytest.raises(DiraZooError, match="no classifier"):
        localize(create_classifier("resnet18", num_classes=0), np.zeros((32, 32), np.float32))


def test_box_lands_on_the_lesion_in_original_pixels() -> None:
    # A 300×200 (w×h) image with a bright 60×50 "lesion"; the model sees it squashed to 128×128.
    image = np.zeros((200, 300), np.float32)
    image[60:110, 150:210] = 1.0
    for crop_pct in (1.0, 0.8):
        result = localize(BrightLesionModel(crop_pct=crop_pct), [image], threshold=0.5)[0]
        mass, normal = result.findings
        assert mass.name == "Mass" and mass.probability > normal.probability
        assert len(mass.boxes) == 1 and normal.boxes == ()
        x0, y0, x1, y1, score = mass.boxes[0]
        assert score == pytest.approx(1.0, abs=1e-3)
        # within one feature cell (4 input px ≈ 9 original px wide, 6 px high) of the truth
        assert (x0, y0, x1, y1) == pytest.approx((150, 60, 210, 110), abs=10)
        heat = mass.heatmap
        assert heat.shape == (200, 300) and heat.dtype == np.float32
        assert heat[85, 180] > 0.9 and heat[20, 20] < 0.1
    # with crop_pct < 1 the border the model never saw is zero
    assert result.findings[0].heatmap[:5].max() == 0.0


def test_boxes_from_map_hand_case() -> None:
    heat = np.zeros((10, 20), np.float32)
    heat[1:3, 2:5] = 0.7  # weaker blob
    heat[5:9, 10:18] = 0.6
    heat[6, 12] = 0.95  # stronger peak inside the second blob
    boxes = boxes_from_map(heat, 0.5)
    assert [b[:4] for b in boxes] == [(10, 5, 18, 9), (2, 1, 5, 3)]
    assert boxes[0].score == pytest.approx(0.95) and boxes[1].score == pytest.approx(0.7)
    # the grid covers the region (100, 50)..(300, 150) of an original image: 10 px per cell
    scaled = boxes_from_map(heat, 0.5, (100.0, 50.0, 300.0, 150.0))
    assert scaled[0][:4] == pytest.approx((200, 100, 280, 140))
    assert boxes_from_map(heat, 0.99) == ()


def test_bf16_maps_agree_with_fp32(cxrs: list[np.ndarray]) -> None:
    model = _resnet(size=160)
    fp32 = localize(model, cxrs[:2], precision="fp32")
    bf16 = localize(model, cxrs[:2], precision="bf16")
    a = np.concatenate([f.raw.ravel() for r in fp32 for f in r.findings])
    b = np.concatenate([f.raw.ravel() for r in bf16 for f in r.findings])
    assert np.corrcoef(a, b)[0, 1] >= 0.99
    for r32, r16 in zip(fp32, bf16, strict=True):
        assert list(r16.probabilities.values()) == pytest.approx(list(r32.probabilities.values()), abs=0.02)


def test_channels_last_model_gives_the_same_maps(cxrs: list[np.ndarray]) -> None:
    model = _resnet()
    before = localize(model, cxrs[:1])[0]
    model.to(memory_format=torch.channels_last)
    after = localize(model, cxrs[:1])[0]
    for a, b in zip(before.findings, after.findings, strict=True):
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-3, atol=1e-5)


def test_full_model_paths_scorecam_and_explicit_layer(cxrs: list[np.ndarray]) -> None:
    model = _resnet(size=64)
    fast = localize(model, cxrs[:1], findings=["Effusion"])[0].findings[0]
    explicit = localize(model, cxrs[:1], findings=["Effusion"], target_layer=model.layer4)[0].findings[0]
    assert explicit.cam.shape == (64, 64)  # the library's output at input resolution
    np.testing.assert_allclose(_as_library_output(fast.cam, 64), explicit.cam, atol=2e-4)
    np.testing.assert_allclose(fast.raw, explicit.raw, rtol=1e-4, atol=1e-6)
    score = localize(model, cxrs[:1], findings=["Effusion"], method="scorecam")[0].findings[0]
    assert score.raw.shape == (2, 2) and score.cam.max() <= 1.0 and score.heatmap.shape == (512, 512)
    assert set(METHODS) >= {
        "gradcam",
        "gradcam++",
        "hirescam",
        "xgradcam",
        "eigencam",
        "layercam",
        "scorecam",
    }


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_hooks_released_and_memory_flat() -> None:
    model = _resnet(size=32)
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    for _ in range(20):  # warm-up: allocator pools, caches
        localize(model, image)
    gc.collect()
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    for _ in range(200):
        localize(model, image)
    gc.collect()
    end, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert end - start < 1_000_000, f"Python heap grew by {end - start} bytes over 200 calls"
    assert _hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


def _rss_bytes() -> int:
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("needs /proc (Linux)")
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_resident_memory_flat_over_1000_calls() -> None:
    model = _resnet(size=32)
    image = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    for _ in range(50):
        localize(model, image)
    gc.collect()
    start = _rss_bytes()
    for _ in range(1000):
        localize(model, image)
    gc.collect()
    grown = _rss_bytes() - start
    assert grown < 32 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB over 1000 calls"
    assert _hook_count(model) == 0


def test_thread_safe(cxrs: list[np.ndarray]) -> None:
    model = _resnet(size=64)
    expected = [r.findings[1].raw for r in localize(model, cxrs)]
    errors: list[BaseException] = []
    got: dict[tuple[int, int], np.ndarray] = {}

    def work(worker: int) -> None:
        try:
            for rep in range(4):
                k = (worker + rep) % len(cxrs)
                got[(worker, rep)] = (k, localize(model, cxrs[k])[0].findings[1].raw)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 16
    for k, raw in got.values():
        np.testing.assert_allclose(raw, expected[k], rtol=1e-4, atol=1e-6)
    assert _hook_count(model) == 0


def test_record_is_json_in_original_pixels(real_cxr: Path) -> None:
    model = _resnet()
    path = real_cxr / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
    result = localize(model, [path], top_k=2, threshold=0.3)[0]
    record = json.loads(json.dumps(localization_record(result, model_name="test-model")))
    assert record["model"] == "test-model" and record["method"] == "gradcam"
    assert record["image"] == {"path": str(path), "width": 1024, "height": 1024}
    assert len(record["findings"]) == 2 and set(record["probabilities"]) == set(LABELS)
    assert set(record["versions"]) == {"dira_zoo", "torch", "timm", "grad_cam"}
    boxes = [b for f in record["findings"] for b in f["boxes"]]
    assert boxes, "threshold 0.3 on a normalised map always leaves a component"
    for b in boxes:
        assert 0 <= b["x0"] < b["x1"] <= 1024 and 0 <= b["y0"] < b["y1"] <= 1024 and 0.3 <= b["score"] <= 1


def test_overlay_blends_heat_and_draws_boxes(tmp_path: Path) -> None:
    grey = np.full((100, 160), 0.5, np.float32)
    heat = np.zeros_like(grey)
    heat[20:60, 30:90] = 1.0
    rgb = render_overlay(grey, heat, [(100, 10, 150, 80, 0.9)], ["Mass 0.90"])
    assert rgb.shape == (100, 160, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[95, 5]) == (128, 128, 128)  # cold and outside boxes: the radiograph untouched
    assert rgb[40, 60, 0] > rgb[40, 60, 2]  # hot: JET red dominates
    assert tuple(rgb[50, 100]) == (255, 255, 255)  # the box's left edge, first palette colour
    path = save_png(tmp_path / "ö.png", rgb)
    back = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(back[..., ::-1], rgb)
    with pytest.raises(DiraZooError, match="cannot write"):
        save_png(tmp_path / "missing" / "x.png", rgb)


def test_render_result_on_a_real_radiograph(real_cxr: Path, tmp_path: Path) -> None:
    result = localize(_resnet(), [real_cxr / "00000001_000.png"], top_k=2)[0]
    rgb = render_result(result)
    assert rgb.shape == (512, 512, 3)
    grey = (result.image.pixels * 255).round()
    assert np.abs(rgb.astype(float).mean(axis=2) - grey).mean() > 1.0  # heat and boxes are visible
