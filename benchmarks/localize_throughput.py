"""Throughput of ``dira_zoo.localize`` against a bare forward pass and pytorch-grad-cam's default use.

One run, one model, one batch of images, every mode timed in the same process::

    python benchmarks/localize_throughput.py --arch resnet50 --size 224 --batch 8 --iters 3

Modes (images/s), each in NCHW and channels_last: the bare forward (fp32, bf16 autocast) and
``localize`` (fp32, bf16 trunk; top-1 finding per image, boxes included); and the library's default use
(``GradCAM(model, [model.layer4[-1]])`` on the whole NCHW model, fp32: it cannot run under bf16
autocast). Ratios: ours / bare forward of the same precision and layout (target ≥ 0.85) and our
fastest mode / the library's default (target ≥ 5).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

LAYOUTS = (torch.contiguous_format, torch.channels_last)


def _interleaved(
    modes: dict[str, Callable[[], object]],
    *,
    iters: int,
    warmup: int,
    device: torch.device,
) -> dict[str, float]:
    """Median seconds per call of every mode, timed round-robin so that load drifts hit all modes alike."""
    times: dict[str, list[float]] = {name: [] for name in modes}
    for round_ in range(warmup + iters):
        for name, fn in modes.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16"],
        choices=["fp32", "bf16"],
        help="bf16 is emulated (very slow) on CPUs without AVX512-BF16/AMX: use fp32 there",
    )
    args = parser.parse_args()

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from dira_zoo.localize import localize, preprocess_for
    from dira_zoo.models import create_classifier
    from dira_zoo.registry import CHESTXRAY14_LABELS

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_classifier(args.arch, num_classes=len(CHESTXRAY14_LABELS))
    model.pretrained_cfg = {
        **model.pretrained_cfg,
        "label_names": list(CHESTXRAY14_LABELS),
        "input_size": [3, args.size, args.size],
        "crop_pct": 1.0,
    }
    model = model.to(device).eval()
    # One copy per memory layout, as a user holds a model: converting one model back and forth between
    # the timed modes would also invalidate localize's cached (BatchNorm-folded) trunk on every call.
    models = {layout: copy.deepcopy(model).to(memory_format=layout) for layout in LAYOUTS}
    rng = np.random.default_rng(0)
    images = [rng.random((args.size, args.size), dtype=np.float32) for _ in range(args.batch)]
    batch = preprocess_for(model).batch(images).to(device)
    with torch.no_grad():
        top1 = model(batch).argmax(dim=1).tolist()

    def bare(precision: str, layout: torch.memory_format) -> Callable[[], object]:
        x = batch.contiguous(memory_format=layout)
        net = models[layout]

        def run() -> object:
            with (
                torch.inference_mode(),
                torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"),
            ):
                return net(x)

        return run

    def ours(precision: str, layout: torch.memory_format) -> Callable[[], object]:
        net = models[layout]
        return lambda: localize(net, images, top_k=1, batch_size=args.batch, precision=precision)

    def library_default() -> object:
        net = models[torch.contiguous_format]
        with GradCAM(model=net, target_layers=[net.layer4[-1]]) as cam:
            return cam(input_tensor=batch, targets=[ClassifierOutputTarget(c) for c in top1])

    modes: dict[str, Callable[[], object]] = {}
    ratios: list[tuple[str, str, str]] = []
    for layout, tag in zip(LAYOUTS, ("NCHW", "channels_last"), strict=True):
        for precision in args.precisions:
            modes[f"bare forward {precision} {tag}"] = bare(precision, layout)
            modes[f"localize {precision} {tag}"] = ours(precision, layout)
            ratios.append((f"localize {precision} {tag}", f"bare forward {precision} {tag}", "≥ 0.85"))
    modes["grad-cam default fp32 NCHW"] = library_default
    seconds = _interleaved(modes, iters=args.iters, warmup=args.warmup, device=device)
    ips = {name: args.batch / s for name, s in seconds.items()}
    fastest = max((k for k in ips if k.startswith("localize")), key=ips.__getitem__)
    ratios.append((fastest, "grad-cam default fp32 NCHW", "≥ 5, fastest mode"))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"{args.arch} {args.size}px batch {args.batch}, median of {args.iters} interleaved rounds, "
        f"device {device} ({where}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    for name, value in ips.items():
        print(f"  {name:<36} {value:9.2f} images/s")
    print("ratios")
    for num, den, target in ratios:
        print(f"  {num + ' / ' + den:<70} {ips[num] / ips[den]:6.2f}  (target {target})")


if __name__ == "__main__":
    main()
