"""Command-line entry points: ``dira-zoo`` (list, info, convert, export, push, evaluate-localization).

Thin over the library. User errors (:class:`~dira_zoo.errors.DiraZooError`) print one line on stderr
and exit with status 2; only bugs keep a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import DiraZooError

EXIT_USER_ERROR = 2


def run_guarded(fn: Callable[[], int | None], prog: str) -> int:
    """Run ``fn``; a user error becomes one ``prog: error: …`` line and exit status 2."""
    try:
        return int(fn() or 0)
    except DiraZooError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def zoo_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dira-zoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # Subcommands are filled in by the foundation work; each registers (parser, handler).
    del sub
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.handler(args), "dira-zoo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(zoo_main())
