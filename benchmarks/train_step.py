"""Throughput of DiRA's training steps against a plain classifier step, and of the two data paths.

    python benchmarks/train_step.py                                   # GPU settings: 224², batch 64
    python benchmarks/train_step.py --device cuda --precision bf16 --channels-last [--compile]
    python benchmarks/train_step.py --device cpu --size 64 --batch 8 --iters 3 --data-images 64

Everything runs in one process on one device, so the ratios compare like with like: images/s of the
``di``, ``dir`` and ``dira`` steps (``Trainer.train_step``: forward, losses, SGD, and in dira the
discriminator's Adam step) and of a plain ResNet fwd+bwd+SGD step at the same batch, size and
precision; the FLOPs of one step of each (``torch.utils.flop_counter``), the achieved FLOP/s and the
efficiency (achieved FLOP/s relative to the plain step's). Then the data path: images/s of the
DataLoader producing DiRA samples from PNG files versus from the memmap cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dira_zoo.models import create_classifier
from training import cache
from training.config import RunConfig, load_config
from training.data import make_loader
from training.datasets import image_folder
from training.trainer import Trainer, pick_device


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--variant", default="moco", choices=("moco", "barlowtwins", "simsiam"))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--iters", type=int, default=20, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="timing rounds (the best is reported)")
    p.add_argument("--queue", type=int, default=65536, help="MoCo queue (a multiple of --batch)")
    p.add_argument("--data-images", type=int, default=256, help="PNG files for the data-path test (0: skip)")
    p.add_argument(
        "--data-source-size", type=int, default=1024, help="side of those PNGs (ChestX-ray14: 1024)"
    )
    p.add_argument("--cache-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    return p.parse_args()


def run_config(args: argparse.Namespace, mode: str, out_dir: Path, *, compile_: bool) -> RunConfig:
    return load_config(
        None,
        [
            f"mode={mode}",
            f"method.variant={args.variant}",
            f"model.architecture={args.arch}",
            f"data.image_size={args.size}",
            f"optim.batch_size={args.batch}",
            f"method.moco.queue_size={args.queue}",
            f"precision={args.precision}",
            f"channels_last={args.channels_last}",
            f"compile={compile_}",
            f"device={args.device}",
            "deterministic=false",
            f"out_dir={out_dir / mode}",
        ],
    )


def synthetic_batch(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.rand(args.batch, 1, args.size, args.size, generator=g) for _ in range(3))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device: torch.device, iters: int) -> float:
    """Seconds per step over ``iters`` steps."""
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return (time.perf_counter() - start) / iters


def count_flops(step) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


class PlainStep:
    """A timm classifier's fwd + bwd + SGD step: the yardstick DiRA's steps are compared with."""

    def __init__(self, args: argparse.Namespace, device: torch.device, compile_: bool) -> None:
        fmt = torch.channels_last if args.channels_last else torch.contiguous_format
        self.model = create_classifier(args.arch, 1000).to(device, memory_format=fmt)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
        self.x = torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 1000, (args.batch,), device=device)
        self.bf16 = args.precision == "bf16"
        self.forward = torch.compile(self.model) if compile_ else self.model

    def __call__(self) -> float:
        with torch.autocast(self.x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = torch.nn.functional.cross_entropy(self.forward(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def bench_steps(args: argparse.Namespace, device: torch.device, tmp: Path) -> None:
    batch = tuple(t.to(device) for t in synthetic_batch(args))  # on the device already: compute only

    def dira_step(mode: str, compile_: bool):
        trainer = Trainer(run_config(args, mode, tmp, compile_=compile_), readers={})
        return lambda: trainer.train_step(batch)

    makers = {"plain": lambda c: PlainStep(args, device, c)}
    makers.update({mode: (lambda c, m=mode: dira_step(m, c)) for mode in ("di", "dir", "dira")})
    # FLOPs on eager copies (counting does not see through torch.compile), timing on the --compile ones.
    flops = {name: count_flops(make(False)) for name, make in makers.items()}
    steps = {name: make(args.compile) for name, make in makers.items()}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    # Rounds interleave the four steps; the best round of each is kept, so a busy machine (or clock
    # changes) hurts every step alike instead of whichever happened to run at the wrong moment.
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(time_steps(step, device, args.iters))
    seconds = {name: min(t) for name, t in times.items()}
    rows = [(name, seconds[name], flops[name]) for name in makers]

    _, base_s, base_flops = rows[0]
    print(
        f"\nsteps: {args.arch}, {args.variant}, {args.size}², batch {args.batch}, {args.precision}, "
        f"channels_last={args.channels_last}, compile={args.compile}, device={device}"
    )
    header = ("step", "ms/step", "img/s", "x plain", "GFLOP/step", "x plain", "TFLOP/s", "efficiency")
    print("{:>6} {:>9} {:>9} {:>8} {:>11} {:>8} {:>8} {:>10}".format(*header))
    for name, seconds, flops in rows:
        print(
            f"{name:>6} {seconds * 1e3:9.1f} {args.batch / seconds:9.2f} {base_s / seconds:8.3f} "
            f"{flops / 1e9:11.2f} {flops / base_flops:8.2f} {flops / seconds / 1e12:8.4f} "
            f"{(flops / seconds) / (base_flops / base_s):10.3f}"
        )
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


def write_pngs(folder: Path, count: int, side: int) -> None:
    """Chest-sized noisy gradients: PNG decode cost like real 8-bit radiographs (not all-flat)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 200, side, dtype=np.float32)[None, :]
    for i in range(count):
        image = ramp + rng.normal(0, 12, (side, side)).astype(np.float32)
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.clip(image, 0, 255).astype(np.uint8))


def images_per_second(reader, cfg: RunConfig) -> float:
    loader, _ = make_loader(reader, cfg, train=True, batch_size=cfg.optim.batch_size)
    start = time.perf_counter()
    n = sum(len(batch[0]) for batch in loader)
    return n / (time.perf_counter() - start)


def bench_data(args: argparse.Namespace, tmp: Path) -> None:
    folder = tmp / "pngs"
    write_pngs(folder, args.data_images, args.data_source_size)
    cfg = run_config(args, "dir", tmp, compile_=False)
    cfg.data.workers = args.workers
    cfg.optim.batch_size = min(args.batch, args.data_images)
    files = image_folder(folder)
    png = images_per_second(files, cfg)
    start = time.perf_counter()
    cached = cache.build(files, tmp / "cache" / "train.npy", args.cache_size, workers=args.workers)
    build_s = time.perf_counter() - start
    memmap = images_per_second(cached, cfg)
    print(
        f"\ndata: {args.data_images} PNGs of {args.data_source_size}², {args.size}² dir samples, "
        f"{args.workers} workers, batch {cfg.optim.batch_size}"
    )
    print(f"  PNG decode + views : {png:9.1f} img/s")
    print(f"  memmap ({args.cache_size}²) + views: {memmap:9.1f} img/s  ({memmap / png:.2f}x)")
    print(f"  one-time cache build: {build_s:.1f} s ({args.data_images / build_s:.1f} img/s)")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        bench_steps(args, device, Path(tmp))
        if args.data_images:
            bench_data(args, Path(tmp))


if __name__ == "__main__":
    main()
