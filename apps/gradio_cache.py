"""A fix for a race in gradio's image cache that concurrent users of the demo hit.

Gradio (6.x) stores every image a handler returns — and every AnnotatedImage box mask — under a
content-hash path with ``Path.write_bytes``: it truncates and rewrites the file even when it already
exists. Two requests that produce the same image (two users on the same sample, or the same box) then
rewrite a file while the first one's browser is still downloading it, and the download fails with
"Too little data for declared Content-Length". Gradio's own ``save_file_to_cache`` already avoids this
(stage, then ``os.replace``; reuse an existing copy); :func:`install` gives image saving the same rule.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from gradio import processing_utils


def save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's ``save_pil_to_cache`` contract, without ever rewriting a file in place."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{name}.{format}").resolve()
    if path.exists():
        # Same content already cached: keep it, and refresh its age for gradio's delete_cache sweep.
        os.utime(path)
        return str(path)
    fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path)


def install() -> None:
    """Route gradio's image caching (Image, AnnotatedImage, Gallery) through :func:`save_pil_to_cache`."""
    processing_utils.save_pil_to_cache = save_pil_to_cache
