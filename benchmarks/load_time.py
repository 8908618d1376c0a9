"""Cold start: `import dira_zoo` + `dira_zoo.load()` vs `import torch, timm` + `timm.create_model()`.

Both load the same local ResNet-50 export folder (written here first, random weights, 14-class head).
Every measurement is a fresh Python process, so imports are cold in the interpreter; the OS file
cache is warm (one unmeasured warm-up run of each first), which is what a user's second start sees.
The two cases alternate within each repeat so that machine noise hits both alike.

Reported per case: the in-process time (first import → model ready) and the whole process wall time
(interpreter start and exit included); the median over the repeats, and the ratio dira_zoo / timm.

    python benchmarks/load_time.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "dira_zoo": (
        "import time; t0 = time.perf_counter()\n"
        "import dira_zoo\n"
        "model = dira_zoo.load({folder!r})\n"
        "t1 = time.perf_counter()\n"
        "import json; print(json.dumps({{'seconds': t1 - t0, 'classes': model.num_classes}}))\n"
    ),
    "timm": (
        "import time; t0 = time.perf_counter()\n"
        "import torch, timm\n"
        "model = timm.create_model('local-dir:' + {folder!r}, pretrained=True).eval()\n"
        "t1 = time.perf_counter()\n"
        "import json; print(json.dumps({{'seconds': t1 - t0, 'classes': model.num_classes}}))\n"
    ),
}


def make_export(folder: Path, architecture: str) -> Path:
    from dira_zoo.hub import DIRA_PREPROCESS, export
    from dira_zoo.models import create_classifier
    from dira_zoo.registry import CHESTXRAY14_LABELS

    model = create_classifier(architecture, len(CHESTXRAY14_LABELS))
    return export(
        model,
        folder,
        label_names=CHESTXRAY14_LABELS,
        preprocess=DIRA_PREPROCESS,
        dira={"variant": "moco", "stage": "finetuned", "notes": "benchmark: random weights"},
        overwrite=True,
    )


def run_once(case: str, folder: Path) -> tuple[float, float]:
    code = CASES[case].format(folder=str(folder))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{case} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="measured runs per case (default 7)")
    parser.add_argument("--arch", default="resnet50", help="architecture of the export (default resnet50)")
    parser.add_argument("--folder", type=Path, help="use/keep this export folder instead of a temporary one")
    parser.add_argument(
        "--machine", default=platform.processor() or platform.machine(), help="label for the table"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dira-load-time-") as tmp:
        folder = args.folder or Path(tmp) / "export"
        if not (folder / "model.safetensors").is_file():
            make_export(folder, args.arch)
        size_mb = (folder / "model.safetensors").stat().st_size / 1e6
        for case in CASES:  # warm-up: OS file cache, .pyc files
            run_once(case, folder)
        times: dict[str, list[tuple[float, float]]] = {case: [] for case in CASES}
        for i in range(args.repeats):
            order = list(CASES) if i % 2 == 0 else list(reversed(CASES))
            for case in order:
                times[case].append(run_once(case, folder))

    med = {
        c: (statistics.median(t for t, _ in v), statistics.median(w for _, w in v)) for c, v in times.items()
    }
    spread = {c: (min(t for t, _ in v), max(t for t, _ in v)) for c, v in times.items()}
    print(
        f"{args.arch} export ({size_mb:.0f} MB model.safetensors), {args.repeats} fresh processes per case, "
        f"median; machine: {args.machine}; python {platform.python_version()}"
    )
    print()
    print("| case | import + load (s) | min–max (s) | process wall (s) |")
    print("|---|---|---|---|")
    labels = {
        "dira_zoo": "`import dira_zoo` + `dira_zoo.load(folder)`",
        "timm": "`import torch, timm` + `timm.create_model('local-dir:…', pretrained=True)`",
    }
    for case in CASES:
        (t, w), (lo, hi) = med[case], spread[case]
        print(f"| {labels[case]} | {t:.2f} | {lo:.2f}–{hi:.2f} | {w:.2f} |")
    ratio = med["dira_zoo"][0] / med["timm"][0]
    wall_ratio = med["dira_zoo"][1] / med["timm"][1]
    print(f"| ratio dira_zoo / timm | {ratio:.2f} | | {wall_ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
