"""The Gradio demo, served on a loopback port and driven through gradio_client like a real user's browser."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
import torch

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from apps import demo  # noqa: E402
from dira_zoo import hub  # noqa: E402
from dira_zoo.localize import localization_record, localize  # noqa: E402
from dira_zoo.models import create_classifier  # noqa: E402
from dira_zoo.transforms import Preprocess  # noqa: E402

from .conftest import REPO_ROOT  # noqa: E402

# gradio's own queue code trips pandas deprecation warnings; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")

LABELS = ["Effusion", "Mass", "Nodule"]
MAX_UPLOAD = 1024 * 1024
CXR = "00000001_000.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A resnet18 export with three findings at 64 px: a real model folder, fast on two CPU cores."""
    torch.set_num_threads(1)
    torch.manual_seed(0)  # this seed gives non-empty Grad-CAM boxes on the test image
    model = create_classifier("resnet18", len(LABELS))
    folder = hub.export(
        model,
        tmp_path_factory.mktemp("models") / "tiny",
        architecture="resnet18",
        label_names=LABELS,
        preprocess=Preprocess(input_size=(3, 64, 64)),
    )
    return str(folder)


@pytest.fixture(scope="module")
def server(tiny_model: str):
    app = demo.build_app(tiny_model, concurrency=2)
    url = demo.launch(app, port=free_port(), max_file_size=MAX_UPLOAD, block=False)
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return Client(
        server[1], verbose=False, analytics_enabled=False, download_files=str(tmp_path_factory.mktemp("dl"))
    )


def submit(client: Client, path: Path | str, model: str, findings: list[str] | None = None, method="gradcam"):
    return client.predict(handle_file(str(path)), model, findings or [], 2, method, 0.5, api_name="/localize")


def assert_alive(url: str, client: Client, model: str, real_cxr: Path) -> None:
    assert httpx.get(url, timeout=10).status_code == 200
    overlay, *_ = submit(client, real_cxr / CXR, model)
    assert Path(overlay).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- good inputs ------------------------------------------------------------------------------------


def test_good_png_gives_overlay_boxes_table_and_the_cli_record(client, tiny_model, real_cxr):
    overlay, boxes, table, record = submit(client, real_cxr / CXR, tiny_model)

    import cv2

    png = Path(overlay).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"  # PNG, not Gradio's lossy default WebP
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (512, 512, 3)
    assert not np.all(image[..., 0] == image[..., 2]), "the overlay has no coloured heat"

    assert Path(boxes["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert boxes["annotations"], "no boxes were drawn"
    labels = [a["label"] for a in boxes["annotations"]]
    assert set(labels) <= set(LABELS) and len(labels) == len(set(labels))  # one legend entry per finding

    rows = table["data"]
    assert [r[0] for r in rows] and sorted(r[0] for r in rows) == sorted(LABELS)
    probs = [r[1] for r in rows]
    assert probs == sorted(probs, reverse=True) and all(0.0 <= p <= 1.0 for p in probs)
    assert sum(r[2] == "yes" for r in rows) == 2  # top k = 2

    data = json.loads(Path(record).read_text())
    assert Path(record).name == "00000001_000.json"
    assert data["image"] == {"path": CXR, "width": 512, "height": 512}
    # The download is exactly the library's record for the same model and image.
    (expected,) = localize(hub.load(tiny_model), real_cxr / CXR, top_k=2, method="gradcam", threshold=0.5)
    want = localization_record(expected, model_name=tiny_model)
    want["image"]["path"] = CXR
    assert data == want
    assert {r[0]: r[1] for r in rows} == pytest.approx(data["probabilities"], abs=1e-4)


def test_dicom_and_chosen_findings(client, tiny_model, real_cxr):
    dcm = next(p for p in real_cxr.glob("*.dcm") if not p.name.startswith("Fake"))
    _, _, table, record = submit(client, dcm, tiny_model, findings=["Mass"], method="eigencam")
    data = json.loads(Path(record).read_text())
    assert [f["name"] for f in data["findings"]] == ["Mass"]
    assert data["method"] == "eigencam"
    assert [r[0] for r in table["data"] if r[2] == "yes"] == ["Mass"]


def test_model_choice_offers_its_findings(client, tiny_model):
    findings, top_k = client.predict(tiny_model, api_name="/model")
    assert [c[0] for c in findings["choices"]] == LABELS
    assert top_k["maximum"] == len(LABELS)


def test_sample_images_become_examples_and_models_are_listed(tiny_model, real_cxr, tmp_path, monkeypatch):
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "sample_a.png").write_bytes((real_cxr / CXR).read_bytes())
    (samples / "notes.txt").write_text("not listed")
    monkeypatch.setattr(demo, "SAMPLES_DIR", samples)
    app = demo.build_app(tiny_model)
    datasets = [b for b in app.blocks.values() if isinstance(b, gr.Dataset)]
    assert len(datasets) == 1 and [Path(str(s[0])).name for s in datasets[0].samples] == ["sample_a.png"]
    menu = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "model")
    assert menu.choices[0] == ("tiny", tiny_model)  # a folder shows by name; its path is the value

    monkeypatch.setattr(demo.registry, "DEFAULT_MODEL", None)
    monkeypatch.setattr(demo.registry, "list_models", lambda *a, **k: [])
    assert demo.available_models([tiny_model, tiny_model]) == [tiny_model]
    with pytest.raises(demo.DiraZooError, match="no model available"):
        demo.build_app(None)


# --- bad inputs: a message in the page, and the server keeps serving --------------------------------


def _truncated_png(real_cxr: Path, out: Path) -> None:
    out.write_bytes((real_cxr / CXR).read_bytes()[:300])


def _dicom_without_pixels(real_cxr: Path, out: Path) -> None:
    dcm = next(p for p in real_cxr.glob("*.dcm") if not p.name.startswith("Fake"))
    ds = pydicom.dcmread(dcm)
    del ds.PixelData
    ds.save_as(out)


BAD_FILES = {
    "empty.png": lambda real, out: out.write_bytes(b""),
    "truncated.png": _truncated_png,
    "notes.png": lambda real, out: out.write_text("this is not an image\n"),
    "nopixels.dcm": _dicom_without_pixels,
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_shows_a_readable_message(name, client, server, tiny_model, real_cxr, tmp_path):
    path = tmp_path / name
    BAD_FILES[name](real_cxr, path)
    with pytest.raises(AppError) as info:
        submit(client, path, tiny_model)
    message = str(info.value)
    assert message.startswith(f"{name}: "), message  # names the uploaded file, not a server temp path
    assert "/tmp" not in message and "Traceback" not in message and "\n" not in message.strip()
    assert_alive(server[1], client, tiny_model, real_cxr)


def test_oversized_upload_is_refused(client, server, tiny_model, real_cxr, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(MAX_UPLOAD + 1))
    response = httpx.post(
        server[1] + "gradio_api/upload",
        files={"files": ("big.png", big.read_bytes(), "image/png")},
        timeout=30,
    )
    assert response.status_code == 413
    with pytest.raises(ValueError, match="maximum file size"):
        submit(client, big, tiny_model)
    assert_alive(server[1], client, tiny_model, real_cxr)


def test_no_upload_and_unexpected_errors_become_messages(tiny_model, caplog):
    handlers = demo.Handlers(demo.ModelCache(), demo.JsonDownloads())
    run = demo.readable_errors(handlers.localize_upload)
    with pytest.raises(gr.Error, match="Upload a chest X-ray"):
        run(None, tiny_model, [], 2, "gradcam", 0.5)

    def broken() -> None:
        raise RuntimeError("internal detail")

    with caplog.at_level(logging.ERROR, logger="apps.demo"), pytest.raises(gr.Error) as info:
        demo.readable_errors(broken)()
    assert "internal detail" not in info.value.message and "server log" in info.value.message
    assert "internal detail" in caplog.text  # the traceback goes to the log


# --- load: concurrency, one shared model, bounded memory ---------------------------------------------


def test_eight_concurrent_clients_all_answered_with_bounded_memory(server, tiny_model, real_cxr, tmp_path):
    import cv2

    _, url = server
    images = []
    for name in (CXR, "00027426_000.png"):  # 256-pixel copies: the load, not PNG encoding, is under test
        grey = cv2.imread(str(real_cxr / name), cv2.IMREAD_GRAYSCALE)
        images.append(tmp_path / name)
        cv2.imwrite(str(images[-1]), cv2.resize(grey, (256, 256), interpolation=cv2.INTER_AREA))
    warm = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
    submit(warm, images[0], tiny_model)
    before = rss_bytes()

    results: list[tuple[int, int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def user(k: int) -> None:
        try:
            c = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / f"u{k}"))
            for r in range(3):
                image = images[(k + r) % 2]
                *_, record = submit(c, image, tiny_model)
                with lock:
                    results.append((k, r, json.loads(Path(record).read_text())["image"]["path"]))
        except BaseException as exc:  # collected and re-raised in the main thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=user, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    assert len(results) == 24
    assert all(path == images[(k + r) % 2].name for k, r, path in results)  # each got its own answer
    assert_alive(url, warm, tiny_model, real_cxr)
    growth = rss_bytes() - before
    assert growth < 300 * 1024**2, f"RSS grew by {growth / 1024**2:.0f} MB over 24 requests"


def test_model_cache_loads_each_source_once(tiny_model):
    calls: list[str] = []

    def loader(source: str):
        calls.append(source)
        return hub.load(source)

    cache = demo.ModelCache(loader)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(tiny_model))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [tiny_model]
    assert len(got) == 6 and all(entry is got[0] for entry in got)
    assert got[0].labels == tuple(LABELS)


def test_cached_images_are_never_rewritten_in_place(tmp_path):
    """A second request with the same output image must not rewrite the file the first one is serving."""
    from gradio import processing_utils
    from PIL import Image

    from apps import gradio_cache

    gradio_cache.install()
    assert processing_utils.save_pil_to_cache is gradio_cache.save_pil_to_cache
    image = Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))
    first = Path(processing_utils.save_pil_to_cache(image, str(tmp_path), format="png"))
    first.write_bytes(b"being served")  # stands for the bytes a download is reading right now
    assert processing_utils.save_pil_to_cache(image, str(tmp_path), format="png") == str(first)
    assert first.read_bytes() == b"being served"  # gradio's own version truncates and rewrites it here
    first.unlink()
    again = Path(processing_utils.save_pil_to_cache(image, str(tmp_path), format="png"))
    assert again == first and again.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in again.parent.iterdir()] == ["image.png"]  # no staging file left behind


def test_json_downloads_keep_only_the_newest(tmp_path):
    downloads = demo.JsonDownloads(keep=3)
    paths = [Path(downloads.write(f"img{i}", {"i": i})) for i in range(6)]
    assert [p.exists() for p in paths] == [False] * 3 + [True] * 3
    assert json.loads(paths[-1].read_text()) == {"i": 5} and paths[-1].name == "img5.json"


# --- launch limits and the command line --------------------------------------------------------------


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_binds_loopback_by_default(server):
    app, url = server
    assert demo.build_parser().parse_args([]).host == "127.0.0.1"
    assert app.server_name == "127.0.0.1" and url.startswith("http://127.0.0.1:")
    address = _outward_address()
    if address is not None:  # not reachable from the network
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{address}:{app.server_port}/", timeout=5)


def test_cli_options():
    args = demo.build_parser().parse_args(["--max-file-size", "2mb", "--concurrency", "3", "--model", "a"])
    assert args.max_file_size == 2 * 1024 * 1024 and args.concurrency == 3 and args.model == ["a"]
    assert args.port == 7860 and not args.share
    assert demo.build_parser().parse_args([]).max_file_size == 20 * 1024 * 1024
    for bad in (["--max-file-size", "20zz"], ["--concurrency", "0"]):
        with pytest.raises(SystemExit) as info:
            demo.build_parser().parse_args(bad)
        assert info.value.code == 2


def test_main_with_a_bad_model_prints_one_line_and_exits_2(tmp_path, capsys):
    assert demo.main(["--model", str(tmp_path / "missing"), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dira-demo: error: ") and "missing" in err and "\n" not in err


def test_module_entry_point_and_analytics_off():
    """``python -m apps.demo`` works and switches gradio's analytics off even when the variable is unset."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    code = (
        "import os, runpy, sys\n"
        "sys.argv = ['dira-demo', '--help']\n"
        "try:\n"
        "    runpy.run_module('apps.demo', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "import gradio.analytics\n"
        "flag = os.environ['GRADIO_ANALYTICS_ENABLED']\n"
        "print('analytics', flag, gradio.analytics.analytics_enabled(), status)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--host" in out.stdout and "--max-file-size" in out.stdout
    assert out.stdout.splitlines()[-1] == "analytics False False 0"
