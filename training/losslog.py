"""``losses.csv``: one row per training step and per validation, appended and flushed as it goes."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

COLUMNS = ("split", "epoch", "step", "lr", "total", "dis", "res", "adv", "d")


class LossLog:
    """A CSV of every loss; reopening after a resume drops rows the checkpoint had not seen yet."""

    def __init__(self, path: str | Path, keep_until_step: int | None = None) -> None:
        self.path = Path(path)
        rows = []
        if keep_until_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, restval="")
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._file.flush()

    def write(self, split: str, epoch: int, step: int, lr: float, losses: Mapping[str, float]) -> None:
        row = {"split": split, "epoch": epoch, "step": step, "lr": f"{lr:.6g}"}
        row.update({k: f"{v:.6g}" for k, v in losses.items() if k in COLUMNS})
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
