"""DiRA pretraining: ``python -m training.pretrain --config training/configs/<name>.yaml [key=value ...]``.

One process on CPU or one GPU, or many through ``torchrun`` (DDP: NCCL on GPU, gloo on CPU):

    torchrun --standalone --nproc_per_node 4 -m training.pretrain --config training/configs/moco_dir.yaml

``--resume`` continues ``<out_dir>/last.pt`` exactly; ``--resume RUN_DIR`` without ``--config`` takes
the config saved in that run (overrides still apply, e.g. ``max_steps=null``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed

from dira_zoo.cli import run_guarded

from . import distributed as dist
from .checkpoint import LAST, load, save_atomic
from .config import RunConfig, apply_overrides, from_dict, load_config
from .trainer import Trainer


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="run config YAML (training/configs/*.yaml)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue a run from its last.pt",
    )
    parser.add_argument(
        "--save-rank-weights",
        action="store_true",
        help="each DDP process also writes rank<R>.pt (its model weights) at the end, to check they agree",
    )
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. optim.lr=0.01")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    if args.config or not isinstance(args.resume, str):
        cfg = load_config(args.config, args.overrides)
        if isinstance(args.resume, str):
            cfg.out_dir = args.resume
        return cfg
    saved = load(Path(args.resume) / LAST)["config"]
    return from_dict(apply_overrides(saved, [f"out_dir={args.resume}", *args.overrides]))


def init_distributed(cfg: RunConfig) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns whether it did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = cfg.device != "cpu" and torch.cuda.is_available()
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> int:
        cfg = resolve_config(args)
        joined = init_distributed(cfg)
        try:
            trainer = Trainer(cfg, resume=bool(args.resume))
            outcome = trainer.fit()
            if args.save_rank_weights:
                Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
                save_atomic(
                    {"model": trainer.model.state_dict()}, Path(cfg.out_dir) / f"rank{dist.rank()}.pt"
                )
            if dist.rank() == 0:
                print(
                    f"{outcome} at epoch {trainer.epoch}, step {trainer.step}: {cfg.out_dir}", file=sys.stderr
                )
        finally:
            if joined:
                torch.distributed.destroy_process_group()
        return 0

    return run_guarded(run, "training.pretrain")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
