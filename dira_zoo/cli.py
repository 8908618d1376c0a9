"""Command-line entry points: ``dira-zoo`` (list, info, convert, export, push, evaluate-localization).

Thin over the library. User errors (:class:`~dira_zoo.errors.DiraZooError`) print one line on stderr
and exit with status 2; only bugs keep a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import DiraZooError

EXIT_USER_ERROR = 2


def run_guarded(fn: Callable[[], int | None], prog: str) -> int:
    """Run ``fn``; a user error becomes one ``prog: error: …`` line and exit status 2."""
    try:
        return int(fn() or 0)
    except DiraZooError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


# --- handlers (heavy imports stay inside them, so `dira-zoo list` and `--help` stay fast) -----------


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_weights, list_models

    names = list_models(args.pattern, published_only=args.published)
    if args.json:
        print(json.dumps([get_weights(n).meta for n in names], indent=2))
        return 0
    rows = [("name", "arch", "variant", "stage", "classes", "published", "hub repo")]
    for name in names:
        w = get_weights(name)
        published = "embedded" if w.embedded else ("yes" if w.published else "no (not pushed yet)")
        rows.append(
            (name, w.architecture, w.variant, w.stage, str(w.num_classes or "-"), published, w.hub_id or "-")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not names:
        print("(no model matches)", file=sys.stderr)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .hub import resolve_source

    src = resolve_source(args.name, args.revision)
    if src.kind == "registry":
        meta = src.weights.meta
    else:  # describe any other source from its config (no tensors read for folders / the Hub)
        from .hub import fetch

        w = fetch(src, cache_dir=args.cache_dir, states=src.kind not in ("folder", "hf-hub"))
        meta = {
            "source": str(src),
            "kind": src.kind,
            "architecture": w.architecture,
            "num_classes": w.num_classes,
            "label_names": list(w.label_names),
            "preprocess": w.preprocess.as_dict(),
            "decoder": w.has_decoder,
            "dira": w.dira,
        }
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    width = max(len(k) for k in meta)
    for key, value in meta.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key.ljust(width)}  {value}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .convert import convert_official
    from .hub import DIRA_PREPROCESS, export, sha256_file

    src = Path(args.checkpoint)
    converted = convert_official(src)
    arch = args.arch or converted.architecture
    dira = {
        "variant": args.variant,
        "stage": args.stage,
        "pretraining_data": args.pretraining_data,
        "epochs": args.epochs,
        "source": f"official DiRA checkpoint {src.name}",
        "source_sha256": sha256_file(src),
        "layout": converted.layout,
    }
    out = export(
        converted.encoder,
        args.out_dir,
        architecture=arch,
        preprocess=DIRA_PREPROCESS,
        dira=dira,
        decoder_state=converted.decoder,
        repo_id=args.repo,
        overwrite=args.force,
    )
    parts = f"encoder ({len(converted.encoder)} tensors)"
    if converted.decoder:
        parts += f" + decoder ({len(converted.decoder)} tensors)"
    print(
        f"{src} ({converted.layout} layout, {arch}) -> {out}: {parts}; dropped {len(converted.dropped)} keys"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .hub import export, fetch, load, resolve_source

    src = resolve_source(args.source, args.revision)
    w = fetch(src, cache_dir=args.cache_dir, decoder=True)
    state, labels = w.model_state, w.label_names
    if args.num_classes is not None and args.num_classes != w.num_classes:
        model = load(
            args.source, num_classes=args.num_classes, revision=args.revision, cache_dir=args.cache_dir
        )
        state, labels = model.state_dict(), ()
    dira = {**w.dira, "exported_from": str(src)}
    card = None
    if args.card:
        from pathlib import Path

        card = Path(args.card).read_text(encoding="utf-8")
    out = export(
        state,
        args.out_dir,
        architecture=w.architecture,
        label_names=labels,
        preprocess=w.preprocess,
        dira=dira,
        decoder_state=w.decoder_state,
        card=card,
        repo_id=args.repo,
        overwrite=args.force,
    )
    print(f"{src} -> {out}" + (" (with decoder)" if w.decoder_state is not None else ""))
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .hub import EXPORT_FILES, push, sha256_file

    commit = push(
        args.folder,
        args.repo,
        revision=args.revision,
        commit_message=args.message,
        private=args.private,
        token=args.token,
    )
    print(f"pushed {args.folder} to {args.repo} at commit {commit}")
    folder = Path(args.folder)
    files = [(n, sha256_file(folder / n)) for n in EXPORT_FILES if (folder / n).is_file()]
    print("registry record pins:")
    print(f'    hub_id="{args.repo}",')
    print(f'    revision="{commit}",')
    print("    files=(")
    for name, digest in files:
        print(f'        ("{name}", "{digest}"),')
    print("    ),")
    return 0


def _evaluation_missing(args: argparse.Namespace) -> int:
    raise DiraZooError("evaluate-localization is not available in this installation (no dira_zoo.evaluation)")


def _add_evaluate(sub: argparse._SubParsersAction, argv: Sequence[str]) -> None:
    """``evaluate-localization``: parser and handler from :mod:`dira_zoo.evaluation`, imported when used."""
    help_text = "score CAM boxes against ground-truth boxes (IoU/IoBB, Acc@T, pointing game)"
    p = sub.add_parser("evaluate-localization", help=help_text, description=help_text)
    if "evaluate-localization" not in argv:
        p.set_defaults(handler=lambda args: 0)  # never runs: another subcommand was chosen
        return
    try:
        from . import evaluation
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.evaluation":
            raise
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(handler=_evaluation_missing)
        return
    evaluation.add_evaluate_arguments(p)
    p.set_defaults(handler=evaluation.run_evaluate)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dira-zoo",
        description="DiRA model zoo: list, inspect, convert, export and push weights; evaluate localization.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"dira-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list the registered models", description="List the registered models.")
    p.add_argument("pattern", nargs="?", help='shell-style filter, e.g. "dira_*"')
    p.add_argument("--published", action="store_true", help="only models whose weights can be downloaded")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser(
        "info",
        help="show what a model (or export folder) holds",
        description="Show a registry record, or describe an export folder / Hub repo / file.",
    )
    p.add_argument("name", help="registry name, hf-hub:org/name[@rev], export folder or weights file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--revision", help="Hub revision")
    p.add_argument("--cache-dir", help="Hugging Face cache folder")
    p.set_defaults(handler=_cmd_info)

    p = sub.add_parser(
        "convert",
        help="convert an official DiRA .pth into an export folder",
        description="Convert an official DiRA checkpoint (flat U-Net, training checkpoint.pth or "
        "the di ResNet) into the export folder format.",
    )
    p.add_argument("checkpoint", help="official .pth file")
    p.add_argument("out_dir", help="folder to write")
    p.add_argument("--arch", help="architecture (default: read from the checkpoint's block layout)")
    p.add_argument(
        "--variant",
        default="moco",
        choices=("moco", "barlowtwins", "simsiam"),
        help="discriminative method of the checkpoint (default: moco)",
    )
    p.add_argument(
        "--stage", default="dira", choices=("di", "dir", "dira"), help="pretraining stage (default: dira)"
    )
    p.add_argument("--pretraining-data", default="NIH ChestX-ray14", help="pretraining data set")
    p.add_argument("--epochs", type=int, help="pretraining epochs, for the card")
    p.add_argument("--repo", help="the Hub repo it will be pushed to (used in the card)")
    p.add_argument("--force", action="store_true", help="overwrite an existing export folder")
    p.set_defaults(handler=_cmd_convert)

    p = sub.add_parser(
        "export",
        help="re-export any loadable source as an export folder",
        description="Write any source load() accepts into the export folder format.",
    )
    p.add_argument("source", help="registry name, hf-hub:org/name[@rev], export folder, .safetensors or .pth")
    p.add_argument("out_dir", help="folder to write")
    p.add_argument("--num-classes", type=int, help="resize the head (a new head is randomly initialised)")
    p.add_argument("--revision", help="Hub revision")
    p.add_argument("--cache-dir", help="Hugging Face cache folder")
    p.add_argument("--card", help="model card (markdown) to use as README.md")
    p.add_argument("--repo", help="the Hub repo it will be pushed to (used in the card)")
    p.add_argument("--force", action="store_true", help="overwrite an existing export folder")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser(
        "push",
        help="upload an export folder to the Hugging Face Hub",
        description="Create the repo if needed and upload the folder; prints the commit to pin.",
    )
    p.add_argument("folder", help="export folder")
    p.add_argument("--repo", required=True, help="Hub repo, org/name")
    p.add_argument("--revision", help="branch to commit to (default: main)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="HF token (default: HF_TOKEN or the `hf auth login` token)")
    p.set_defaults(handler=_cmd_push)

    _add_evaluate(sub, argv)
    return parser


def zoo_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.handler(args), "dira-zoo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(zoo_main())
