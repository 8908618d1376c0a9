"""``dira-localize``: Grad-CAM lesion localization for image files and folders.

For every image it writes ``<stem>_heatmap.png`` (overlay) and ``<stem>.json`` (the record of
:func:`dira_zoo.localize.localization_record`) and prints a short table. A bad file is reported on
one line naming it and its problem; the other files are still processed, and the exit status is 2
when any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cli import EXIT_USER_ERROR, run_guarded
from .errors import DiraZooError, ImageReadError

PROG = "dira-localize"
#: Findings explained per image when neither --finding nor --top-k is given (a readable overlay).
DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class Options:
    """What to compute and where to put it (the CLI's flags, for :func:`run`)."""

    model_name: str
    out: Path = Path(".")
    findings: tuple[str, ...] | None = None
    top_k: int | None = None
    method: str = "gradcam"
    threshold: float = 0.5
    batch_size: int = 8
    precision: str = "fp32"
    json_stdout: bool = False


def build_parser() -> argparse.ArgumentParser:
    from .localize import METHODS, PRECISIONS

    p = argparse.ArgumentParser(
        prog=PROG, description="Grad-CAM lesion localization for image files and folders."
    )
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE|DIR", help="image files or folders (searched recursively)"
    )
    p.add_argument("--model", help="registry name, hf-hub:org/name, export folder or weights file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--finding", nargs="+", dest="findings", metavar="F", help="findings to explain")
    which.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help=f"explain the K most probable findings (default {DEFAULT_TOP_K})",
    )
    p.add_argument("--method", default="gradcam", choices=list(METHODS))
    p.add_argument("--threshold", type=float, default=0.5, help="box threshold on the normalised map")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: current folder)")
    p.add_argument(
        "--json", action="store_true", help="print the JSON records (one per line) instead of the table"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, … (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="trunk precision")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: _main(args), PROG)


def _main(args: argparse.Namespace) -> int:
    from .registry import DEFAULT_MODEL

    name = args.model or DEFAULT_MODEL
    if name is None:
        raise DiraZooError("no default model ships yet: pass --model NAME|FOLDER (see `dira-zoo list`)")
    paths, missing = _expand(args.inputs)
    if not paths and missing:
        _report(missing, total=len(missing))
        return EXIT_USER_ERROR
    top_k = args.top_k if args.top_k is not None else (None if args.findings else DEFAULT_TOP_K)
    options = Options(
        model_name=str(name),
        out=args.out,
        findings=tuple(args.findings) if args.findings else None,
        top_k=top_k,
        method=args.method,
        threshold=args.threshold,
        batch_size=args.batch_size,
        precision=args.precision,
        json_stdout=args.json,
    )
    from .hub import load

    model = load(str(name), device=_device(args.device))
    status = run(model, paths, options)
    if missing:
        _report(missing, total=len(paths) + len(missing))
        return EXIT_USER_ERROR
    return status


def run(model: object, paths: Sequence[Path], options: Options) -> int:
    """Localize ``paths`` with an already loaded model; 0 when every file worked, else 2."""
    from tqdm.auto import tqdm

    from .io import read_image
    from .localize import localization_record, localize
    from .overlay import render_result, save_png

    if not 0.0 < options.threshold < 1.0:
        raise DiraZooError(f"--threshold must be between 0 and 1, got {options.threshold}")
    if options.top_k is not None and options.top_k < 1:
        raise DiraZooError(f"--top-k must be at least 1, got {options.top_k}")
    if options.batch_size < 1:
        raise DiraZooError(f"--batch-size must be at least 1, got {options.batch_size}")
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiraZooError(
            f"{options.out}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    failures: list[ImageReadError] = []
    stems = _unique_stems(paths)
    bar = tqdm(total=len(paths), desc=PROG, unit="image", disable=len(paths) < 2, file=sys.stderr)
    table: list[tuple[str, str, float, int]] = []
    for start in range(0, len(paths), options.batch_size):
        chunk = paths[start : start + options.batch_size]
        images = []
        for path in chunk:
            try:
                images.append(read_image(path))
            except ImageReadError as exc:
                failures.append(exc)
                bar.update(1)
        if not images:
            continue
        results = localize(
            model,
            images,
            options.findings,
            top_k=options.top_k,
            method=options.method,
            threshold=options.threshold,
            batch_size=options.batch_size,
            precision=options.precision,
        )
        for result in results:
            stem = stems[Path(result.path or "")]
            record = localization_record(result, model_name=options.model_name)
            save_png(options.out / f"{stem}_heatmap.png", render_result(result))
            _write_json(options.out / f"{stem}.json", record)
            if options.json_stdout:
                tqdm.write(json.dumps(record), file=sys.stdout)
            table.extend((stem, f.name, f.probability, len(f.boxes)) for f in result.findings)
            bar.update(1)
    bar.close()
    if not options.json_stdout:
        _print_table(table)
    if failures:
        _report(failures, total=len(paths))
        return EXIT_USER_ERROR
    return 0


def _expand(inputs: Sequence[str]) -> tuple[list[Path], list[ImageReadError]]:
    """Every input on its own, so one missing path does not stop the others."""
    from .io import find_images

    paths: list[Path] = []
    missing: list[ImageReadError] = []
    for item in inputs:
        try:
            paths.extend(p for p in find_images([item]) if p not in paths)
        except ImageReadError as exc:
            missing.append(exc)
    return paths, missing


def _unique_stems(paths: Sequence[Path]) -> dict[Path, str]:
    """Output stems; images with the same stem in different folders get ``_2``, ``_3``…"""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        stem, n = path.stem, 1
        while stem in used:
            n += 1
            stem = f"{path.stem}_{n}"
        used.add(stem)
        stems[path] = stem
    return stems


def _write_json(path: Path, record: dict) -> None:
    try:
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DiraZooError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _print_table(rows: list[tuple[str, str, float, int]]) -> None:
    if not rows:
        return
    width = max(len("image"), *(len(r[0]) for r in rows))
    fwidth = max(len("finding"), *(len(r[1]) for r in rows))
    print(f"{'image':<{width}}  {'finding':<{fwidth}}  probability  boxes")
    for image, finding, prob, boxes in rows:
        print(f"{image:<{width}}  {finding:<{fwidth}}  {prob:>11.3f}  {boxes:>5}")


def _report(failures: Sequence[ImageReadError], *, total: int) -> None:
    if total > 1:
        print(f"{PROG}: {len(failures)} of {total} images failed:", file=sys.stderr)
    for exc in failures:
        print(f"{PROG}: error: {exc}", file=sys.stderr)


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DiraZooError(f"--device {name}: CUDA is not available on this machine")
    return name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
