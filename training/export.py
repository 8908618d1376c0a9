"""Turn a pretraining run into the zoo's weights folder: ``python -m training.export RUN_DIR OUT_DIR``.

The folder is written by :func:`dira_zoo.hub.export` (``config.json``, ``model.safetensors`` with the
encoder under plain timm names, ``decoder.safetensors`` with the U-Net decoder unless the run was
``di``, ``README.md``); the model card's provenance comes from the run (variant, stage, data, epochs,
steps, code version) and the card ends with the run's full configuration. ``--push org/name``
uploads the folder afterwards and prints the commit to pin in the registry.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from dira_zoo import hub
from dira_zoo.cli import run_guarded
from dira_zoo.transforms import NO_NORM_MEAN, NO_NORM_STD, Preprocess

from .checkpoint import BEST, LAST, CheckpointError, load
from .config import RunConfig, from_dict

UNET_PREFIX = "generator.unet."


def split_unet(model_state: Mapping[str, torch.Tensor]) -> tuple[dict, dict | None]:
    """The generator's U-Net keys from a run's model state: (encoder under timm names, decoder or None)."""
    unet = {k[len(UNET_PREFIX) :]: v for k, v in model_state.items() if k.startswith(UNET_PREFIX)}
    encoder = {k[len("encoder.") :]: v for k, v in unet.items() if k.startswith("encoder.")}
    decoder = {k: v for k, v in unet.items() if not k.startswith("encoder.")}
    return encoder, decoder or None


def provenance(cfg: RunConfig, state: Mapping[str, Any], checkpoint: str) -> dict[str, Any]:
    """The ``dira`` block of the export's config.json (and the card's provenance table)."""
    data = cfg.data
    if data.format == "chestxray14":
        source = f"NIH ChestX-ray14 ({data.train_split} split)"
    else:
        source = f"image folder {Path(data.root).name if data.root else '?'}"
    return {
        "variant": cfg.method.variant,
        "stage": cfg.mode,
        "pretraining_data": source,
        "epochs": state["epoch"],
        "steps": state["step"],
        "checkpoint": f"{checkpoint} (best validation loss {state['best_loss']:.5g})"
        if checkpoint == BEST
        else checkpoint,
        "code_version": state.get("code_version"),
        "seed": cfg.seed,
        "image_size": data.image_size,
        "global_batch": cfg.optim.batch_size,
        "initialised_from": cfg.init_from,
    }


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the export folder of ``run_dir`` (``best.pt`` if there is one, else ``last.pt``)."""
    run_dir = Path(run_dir)
    name = checkpoint or (BEST if (run_dir / BEST).is_file() else LAST)
    state = load(run_dir / name)
    cfg = from_dict(state["config"])
    encoder, decoder = split_unet(state["model"])
    if not encoder:
        raise CheckpointError(f"{run_dir / name}: holds no generator weights")
    size = cfg.data.image_size
    out = hub.export(
        encoder,
        out_dir,
        architecture=cfg.model.architecture,
        preprocess=Preprocess(input_size=(3, size, size), mean=NO_NORM_MEAN, std=NO_NORM_STD),
        dira=provenance(cfg, state, name),
        decoder_state=decoder,
        repo_id=repo_id,
        overwrite=overwrite,
    )
    card = Path(out) / "README.md"
    config_yaml = yaml.safe_dump(state["config"], sort_keys=False)
    card.write_text(card.read_text() + f"\n## Training configuration\n\n```yaml\n{config_yaml}```\n")
    return Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a pretraining run directory (holds last.pt, maybe best.pt)")
    parser.add_argument("out_dir", help="the export folder to write")
    parser.add_argument("--checkpoint", choices=(BEST, LAST), help="default: best.pt when present")
    parser.add_argument("--push", metavar="ORG/NAME", help="upload the folder to this Hub model repo")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    args = parser.parse_args(argv)

    def run() -> None:
        out = export_run(
            args.run_dir,
            args.out_dir,
            checkpoint=args.checkpoint,
            repo_id=args.push,
            overwrite=args.overwrite,
        )
        print(f"exported {args.run_dir} -> {out}")
        if args.push:
            commit = hub.push(out, args.push)
            print(f"pushed to {args.push} at revision {commit} (pin this revision in the registry)")

    return run_guarded(run, "training.export")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
