"""Phantom generation speed: images per second at 512², PNG writing included.

    python benchmarks/phantom_speed.py [--n 400] [--size 512] [--workers 1 2]

Runs :func:`training.phantom.generate` into a temporary folder for each worker count and prints
images/s (wall clock, generation and writing only — interpreter start excluded) and the CPU time per
image of the main process when it draws alone. On a shared machine, compare runs of the same process.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from training.phantom import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    generate(8, tempfile.mkdtemp(), args.size, progress=False)  # warm-up: imports, noise bank
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as out:
            wall, cpu = time.perf_counter(), time.process_time()
            generate(args.n, out, args.size, workers=workers, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        line = f"workers={workers}: {args.n / wall:6.1f} images/s at {args.size}²"
        if workers == 1:
            line += f"  ({1000 * cpu / args.n:.1f} ms CPU per image)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
