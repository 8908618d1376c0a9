"""``dira-demo``: a local web page that shows where a chest X-ray classifier looks.

Upload a PNG/JPEG/DICOM, pick a model, findings (or the top k), a CAM method and a box threshold; the
page shows the heat-map overlay (as PNG: Gradio's default WebP is lossy and smears heat maps), the
boxes, every probability, and offers the same JSON record ``dira-localize`` writes.

Built to be left running: it binds 127.0.0.1 unless told otherwise, caps the upload size, queues
requests with bounded concurrency, loads each model once and shares it, runs one localization per
model at a time (pytorch-grad-cam hooks the model and fills its ``.grad``: not thread-safe), and turns
every failure into a message in the page instead of a dead server. Nothing leaves the machine: no
analytics, no share link unless ``--share``, and the page's assets come from the installed wheels.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before gradio is imported: it reads the switch at import time.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from apps import gradio_cache  # noqa: E402
from dira_zoo import hub, registry  # noqa: E402
from dira_zoo.cli import run_guarded  # noqa: E402
from dira_zoo.errors import DiraZooError, ImageReadError  # noqa: E402
from dira_zoo.io import read_image  # noqa: E402
from dira_zoo.localize import METHODS, label_names_for, localization_record, localize  # noqa: E402
from dira_zoo.overlay import render_result  # noqa: E402

log = logging.getLogger("apps.demo")

#: Example images shipped inside the package (whatever PNGs are there; none is fine).
SAMPLES_DIR = registry.EMBEDDED_ROOT.parent / "samples"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_FILE_SIZE = "20mb"
DEFAULT_QUEUE_SIZE = 64
#: Images are shown at most this large: a 3000-pixel DICOM as a full-size PNG is ~10 MB per view.
DISPLAY_MAX_SIDE = 1024
#: How long (s) Gradio keeps uploads and outputs in its cache, and how often it sweeps it.
CACHE_SWEEP = (1800, 3600)
TITLE = "DiRA lesion localization"

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


# --------------------------------------------------------------------------------------------------
# State shared by every session
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model in memory with its label names and the lock that serialises localizations on it."""

    model: nn.Module
    labels: tuple[str, ...]
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelCache:
    """Each weights source loaded once, on first use, and shared by every session."""

    def __init__(self, loader: Callable[[str], nn.Module] = hub.load) -> None:
        self._loader = loader
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, source: str) -> LoadedModel:
        with self._lock:  # two first requests for one source must not load it twice
            entry = self._models.get(source)
            if entry is None:
                model = self._loader(source)
                entry = LoadedModel(model, tuple(label_names_for(model)))
                self._models[source] = entry
            return entry


class JsonDownloads:
    """The JSON records offered for download; only the newest ``keep`` stay on disk.

    Gradio copies an output file into its own cache when it answers, so older originals are safe to
    delete; each record gets its own folder so that the download keeps the image's name.
    """

    def __init__(self, keep: int = DEFAULT_QUEUE_SIZE) -> None:
        self._root = tempfile.TemporaryDirectory(prefix="dira-demo-")
        self._written: deque[Path] = deque()
        self._keep = keep
        self._lock = threading.Lock()

    def write(self, stem: str, record: dict[str, Any]) -> str:
        folder = Path(tempfile.mkdtemp(dir=self._root.name))
        path = folder / f"{stem}.json"
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        with self._lock:
            self._written.append(folder)
            stale = self._written.popleft() if len(self._written) > self._keep else None
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
        return str(path)


# --------------------------------------------------------------------------------------------------
# Choices offered in the page
# --------------------------------------------------------------------------------------------------


def available_models(extra: Sequence[str] = ()) -> list[str]:
    """``extra`` sources first, then the default model and registry models loadable without a download."""
    from huggingface_hub import try_to_load_from_cache

    names: list[str] = list(dict.fromkeys(extra))
    candidates = [registry.DEFAULT_MODEL] if registry.DEFAULT_MODEL else []
    candidates += registry.list_models(published_only=True)
    for name in candidates:
        w = registry.get_weights(name)
        local = w.embedded is not None or all(
            isinstance(try_to_load_from_cache(w.hub_id, f, revision=w.revision), str)
            for f in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)
        )
        if local and name not in names:
            names.append(name)
    return names


def model_label(source: str) -> str:
    """What the model menu shows: a folder's name rather than its whole path."""
    return Path(source).name if os.sep in source or "/" in source else source


def sample_images() -> list[Path]:
    return sorted(SAMPLES_DIR.glob("*.png")) if SAMPLES_DIR.is_dir() else []


# --------------------------------------------------------------------------------------------------
# Request handlers
# --------------------------------------------------------------------------------------------------


def readable_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure of ``fn`` becomes a ``gr.Error`` the page shows; the server keeps running.

    User errors keep their one-line message (with the uploaded file's name, not Gradio's temp path);
    anything else is a bug: logged with its traceback, and the page gets a generic message.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except gr.Error:
            raise
        except ImageReadError as exc:
            raise gr.Error(
                f"{Path(exc.path).name}: {exc.problem}", title="Cannot read the image", print_exception=False
            ) from None
        except DiraZooError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:
            log.exception("dira-demo: %s failed", fn.__name__)
            raise gr.Error(
                "Unexpected error while processing this request (details are in the server log).",
                print_exception=False,
            ) from None

    return wrapper


def _fit(image: np.ndarray) -> tuple[np.ndarray, float]:
    """``image`` shrunk so that its longer side is at most :data:`DISPLAY_MAX_SIDE`, and the factor."""
    scale = min(1.0, DISPLAY_MAX_SIDE / max(image.shape[:2]))
    if scale == 1.0:
        return image, scale
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def box_mask(size: tuple[int, int], boxes: Sequence[Sequence[float]], scale: float) -> np.ndarray:
    """All boxes of one finding as one AnnotatedImage mask (so the legend lists each finding once).

    Filled faintly with an opaque outline, like Gradio draws a single box.
    """
    mask = np.zeros(size, dtype=np.float32)
    border = max(2, round(min(size) / 200))
    for box in boxes:
        x0, y0, x1, y1 = (round(float(v) * scale) for v in box[:4])
        mask[y0:y1, x0:x1] = np.maximum(mask[y0:y1, x0:x1], 0.35)
        cv2.rectangle(mask, (x0, y0), (max(x1 - 1, x0), max(y1 - 1, y0)), 1.0, border)
    return mask


class Handlers:
    """What the page's events call: one instance per app, shared by every session."""

    def __init__(self, cache: ModelCache, downloads: JsonDownloads) -> None:
        self.cache = cache
        self.downloads = downloads

    def model_changed(self, source: str) -> tuple[Any, Any]:
        """Offer the chosen model's findings (loading it on first use)."""
        labels = self.cache.get(source).labels
        return (
            gr.Dropdown(choices=list(labels), value=[]),
            gr.Slider(minimum=1, maximum=len(labels), value=min(3, len(labels)), step=1),
        )

    def localize_upload(
        self,
        upload: str | None,
        source: str,
        findings: list[str] | None,
        top_k: float,
        method: str,
        threshold: float,
    ) -> tuple[np.ndarray, tuple[np.ndarray, list], list[list[Any]], str]:
        """Overlay, boxes, probability table and JSON download for one uploaded image."""
        if not upload:
            raise gr.Error("Upload a chest X-ray (PNG, JPEG or DICOM) first.", print_exception=False)
        if not source:
            raise gr.Error("Choose a model first.", print_exception=False)
        xray = read_image(upload)
        entry = self.cache.get(source)
        with entry.lock:
            (result,) = localize(
                entry.model,
                xray,
                list(findings) if findings else None,
                top_k=None if findings else int(top_k),
                method=method,
                threshold=float(threshold),
            )
        name = Path(upload).name
        overlay, _ = _fit(render_result(result))
        grey = np.repeat((np.clip(xray.pixels, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
        base, scale = _fit(grey)
        boxes = [(box_mask(base.shape[:2], f.boxes, scale), f.name) for f in result.findings if f.boxes]
        explained = {f.name for f in result.findings}
        table = [
            [label, round(p, 4), "yes" if label in explained else ""]
            for label, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1])
        ]
        record = localization_record(result, model_name=source)
        record["image"]["path"] = name  # the uploaded file's name, not the server's temp path
        return overlay, (base, boxes), table, self.downloads.write(Path(name).stem, record)


# --------------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------------


def build_app(
    models: str | Sequence[str] | None = None,
    *,
    concurrency: int = 1,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    cache: ModelCache | None = None,
) -> gr.Blocks:
    """The demo page for ``models`` (registry names or export folders; default: those available locally).

    The first model is loaded here, so a bad source fails before the server starts. Requests queue
    (at most ``queue_size`` waiting) and ``concurrency`` of them run at once.
    """
    if concurrency < 1 or queue_size < 1:
        raise DiraZooError(
            f"concurrency and queue size must be at least 1, got {concurrency} and {queue_size}"
        )
    sources = available_models([models] if isinstance(models, str) else list(models or ()))
    if not sources:
        raise DiraZooError(
            "no model available offline: pass --model with an export folder (dira-zoo export) or a registry "
            "name whose weights are in the Hugging Face cache"
        )
    gradio_cache.install()  # concurrent users must not corrupt each other's downloads
    cache = cache or ModelCache()
    labels = cache.get(sources[0]).labels
    handlers = Handlers(cache, JsonDownloads(keep=queue_size + 16))

    with gr.Blocks(title=TITLE, delete_cache=CACHE_SWEEP) as app:
        gr.Markdown(
            f"# {TITLE}\nUpload a chest X-ray (PNG, JPEG or DICOM) to see where the classifier finds "
            "evidence for each finding (class activation maps and boxes). A research demo: not for diagnosis."
        )
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Chest X-ray (PNG, JPEG or DICOM)", type="filepath", elem_id="upload")
                model = gr.Dropdown(
                    [(model_label(s), s) for s in sources], value=sources[0], label="Model", elem_id="model"
                )
                findings = gr.Dropdown(
                    list(labels),
                    value=[],
                    multiselect=True,
                    label="Findings",
                    info="Leave empty to explain the most probable ones.",
                    elem_id="findings",
                )
                top_k = gr.Slider(1, len(labels), value=min(3, len(labels)), step=1, label="Top k")
                method = gr.Dropdown(list(METHODS), value="gradcam", label="CAM method")
                threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Box threshold")
                run = gr.Button("Localize", variant="primary", elem_id="run")
                samples = sample_images()
                if samples:
                    gr.Examples([[str(p)] for p in samples], inputs=[upload], label="Sample images")
            with gr.Column(scale=2):
                with gr.Row():
                    overlay = gr.Image(label="Heat map", format="png", interactive=False, elem_id="overlay")
                    boxes = gr.AnnotatedImage(label="Boxes", format="png", elem_id="boxes")
                table = gr.Dataframe(
                    headers=["finding", "probability", "explained"],
                    datatype=["str", "number", "str"],
                    label="Probabilities",
                    interactive=False,
                    elem_id="probabilities",
                )
                record = gr.File(label="Result (JSON, as dira-localize writes it)", elem_id="record")

        model.change(readable_errors(handlers.model_changed), model, [findings, top_k], api_name="model")
        run.click(
            readable_errors(handlers.localize_upload),
            [upload, model, findings, top_k, method, threshold],
            [overlay, boxes, table, record],
            api_name="localize",
        )
    app.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    return app


def launch(
    app: gr.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_file_size: int | str = DEFAULT_MAX_FILE_SIZE,
    share: bool = False,
    block: bool = True,
) -> str:
    """Serve ``app``; returns its local URL (at once when ``block`` is false, e.g. in tests)."""
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            share=share,
            max_file_size=max_file_size,
            prevent_thread_lock=not block,
            ssr_mode=False,  # no Node server: the page is plain static assets from the gradio wheel
            mcp_server=False,
            pwa=False,
            quiet=not block,
        )
    except OSError as exc:  # the port is taken, or the host is not an address of this machine
        raise DiraZooError(f"cannot serve on {host}:{port}: {exc}") from None
    return url


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _file_size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 20mb, 512kb or 1gb")
    return int(match[1]) * _UNITS[(match[2] or "b").lower()]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dira-demo", description="A local web page that shows where a chest X-ray classifier looks."
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="SOURCE",
        help="registry name or export folder; repeat to offer several (default: the models found offline)",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the demo)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    parser.add_argument(
        "--max-file-size",
        type=_file_size,
        default=DEFAULT_MAX_FILE_SIZE,
        help="largest accepted upload (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency", type=_positive, default=1, help="requests processed at once (default %(default)s)"
    )
    parser.add_argument(
        "--queue-size",
        type=_positive,
        default=DEFAULT_QUEUE_SIZE,
        help="requests allowed to wait (default %(default)s)",
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="also open a public gradio.live link (needs network; off by default)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up probes of the local URL

    def serve() -> None:
        app = build_app(args.model, concurrency=args.concurrency, queue_size=args.queue_size)
        launch(app, host=args.host, port=args.port, max_file_size=args.max_file_size, share=args.share)

    return run_guarded(serve, "dira-demo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
