"""DiRA's restorative distortions (§3.5 of the method notes): cut-out, out-painting, patch swapping.

The official ``Custom_Distoration`` works on 224² crops with sizes in pixels; here every size and
margin is scaled by ``side / 224``, so a 224² crop gets exactly the official numbers and a tiny test
crop gets proportionate ones. Each function takes a grey H×W float array and returns a new one; all
randomness comes from the ``numpy`` generator passed in (the data pipeline seeds one per sample).
"""

from __future__ import annotations

import numpy as np

from .config import DistortionConfig

REFERENCE_SIDE = 224
MAX_BLOCKS = 10
STOP_P = 0.1  # after each cut-out / out-painting window the loop stops with this probability


def _px(value: float, side: int, minimum: int = 0) -> int:
    return max(minimum, round(value * side / REFERENCE_SIDE))


def _corner(rng: np.random.Generator, side: int, size: int, margin: int) -> int:
    """A top/left coordinate keeping a ``margin`` to both borders (less when the block is too big)."""
    margin = min(margin, max(0, (side - size) // 2))
    return int(rng.integers(margin, side - size - margin, endpoint=True))


def cutout(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero up to 10 random blocks of 10–70 px (in-painting task)."""
    out = image.copy()
    h_img, w_img = out.shape
    lo, hi, margin = _px(10, h_img, 1), _px(70, h_img, 1), _px(3, h_img)
    for _ in range(MAX_BLOCKS):
        h, w = (int(rng.integers(lo, hi, endpoint=True)) for _ in range(2))
        h, w = min(h, h_img), min(w, w_img)
        y, x = _corner(rng, h_img, h, margin), _corner(rng, w_img, w, margin)
        out[y : y + h, x : x + w] = 0.0
        if rng.random() < STOP_P:
            break
    return out


def outpaint(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep only the union of up to 10 windows 50–70 px smaller than the image (out-painting task)."""
    out = np.zeros_like(image)
    h_img, w_img = image.shape
    lo, hi, margin = _px(50, h_img, 1), _px(70, h_img, 1), _px(3, h_img)
    for _ in range(MAX_BLOCKS):
        h = h_img - int(rng.integers(lo, hi, endpoint=True))
        w = w_img - int(rng.integers(lo, hi, endpoint=True))
        h, w = max(h, 1), max(w, 1)
        y, x = _corner(rng, h_img, h, margin), _corner(rng, w_img, w, margin)
        out[y : y + h, x : x + w] = image[y : y + h, x : x + w]
        if rng.random() < STOP_P:
            break
    return out


def swap_patches(
    image: np.ndarray, rng: np.random.Generator, pairs: int = MAX_BLOCKS, attempts: int = 10
) -> np.ndarray:
    """Swap ``pairs`` (10) pairs of 10–15 px blocks, read from the undistorted image.

    The official overlap test is ineffective (quirk d); here the two blocks of a pair never overlap
    (positions are redrawn up to ``attempts`` times, then the pair is skipped).
    """
    out = image.copy()
    h_img, w_img = image.shape
    lo, hi, margin = _px(10, h_img, 1), _px(15, h_img, 1), _px(3, h_img)
    for _ in range(pairs):
        h, w = (int(rng.integers(lo, hi, endpoint=True)) for _ in range(2))
        for _ in range(attempts):
            y1, y2 = _corner(rng, h_img, h, margin), _corner(rng, h_img, h, margin)
            x1, x2 = _corner(rng, w_img, w, margin), _corner(rng, w_img, w, margin)
            if abs(y1 - y2) >= h or abs(x1 - x2) >= w:
                out[y1 : y1 + h, x1 : x1 + w] = image[y2 : y2 + h, x2 : x2 + w]
                out[y2 : y2 + h, x2 : x2 + w] = image[y1 : y1 + h, x1 : x1 + w]
                break
    return out


def distort(image: np.ndarray, rng: np.random.Generator, cfg: DistortionConfig) -> tuple[np.ndarray, str]:
    """One branch by probability (30% cut-out, 5% out-painting, 30% swap, 35% none by default).

    Returns the distorted image and the branch name (tests and debugging look at it).
    """
    r = rng.random()
    if r < cfg.cutout:
        return cutout(image, rng), "cutout"
    if r < cfg.cutout + cfg.outpaint:
        return outpaint(image, rng), "outpaint"
    if r < cfg.cutout + cfg.outpaint + cfg.swap:
        return swap_patches(image, rng), "swap"
    return image, "none"
