"""User-facing errors.

Every error a user can cause (a bad file, an unknown model name, a missing download) is a
:class:`DiraZooError`. The CLIs print its message on one line and exit with status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DiraZooError(Exception):
    """Base class of the errors a user can fix; the message is one line that says how."""


class ImageReadError(DiraZooError):
    """An input image cannot be decoded or fails a sanity check."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class WeightsError(DiraZooError):
    """Weights cannot be found, fetched, verified or fitted to the requested model."""


class UnknownModelError(WeightsError):
    """A registry name that does not exist."""


class ChecksumError(WeightsError):
    """A downloaded or embedded file does not match its pinned sha256."""
