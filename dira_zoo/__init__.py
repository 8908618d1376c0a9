"""dira-zoo: DiRA self-supervised chest X-ray models, ready for transfer learning and lesion localization.

>>> import dira_zoo
>>> dira_zoo.list_models()                                  # doctest: +SKIP
>>> model = dira_zoo.load("dira_moco_chestxray14", num_classes=14)  # doctest: +SKIP

Importing the package is cheap: torch, timm, grad-cam and friends load when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "list_models": "registry",
    "get_weights": "registry",
    "register": "registry",
    "Weights": "registry",
    "load": "hub",
    "resolve_source": "hub",
    "export": "hub",
    "push": "hub",
    "read_image": "io",
    "localize": "localize",
    "DiraZooError": "errors",
    "ImageReadError": "errors",
    "WeightsError": "errors",
}

if TYPE_CHECKING:  # pragma: no cover
    from .errors import DiraZooError, ImageReadError, WeightsError
    from .hub import export, load, push, resolve_source
    from .io import read_image
    from .localize import localize
    from .registry import Weights, get_weights, list_models, register


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dira_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "DiraZooError", "ImageReadError", "Weights", "WeightsError", "__version__", "export", "get_weights",
    "list_models", "load", "localize", "push", "read_image", "register", "resolve_source",
]  # fmt: skip
