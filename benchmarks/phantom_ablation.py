"""The phantom ablation benchmark (di / dir / dira / random init × 1, 10, 100 % labels × 3 seeds).

    python benchmarks/phantom_ablation.py --config small [--out runs/phantom_ablation_small]

A thin entry: the experiment lives in :mod:`training.experiments.phantom_ablation`; results go to
``<out>/results.json`` and ``<out>/table.md`` (copied by hand into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from training.experiments.phantom_ablation import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
