"""The demo end to end in a real headless Chromium: upload, run, see the overlay, save a screenshot.

Needs Debian's ``chromium`` and ``chromium-driver`` (``bash scripts/install_browser.sh``, run by
``scripts/setup.sh dev``); without them the test skips and says why. The browser may only reach
127.0.0.1, so the page must work with no network at all. Set ``DIRA_DEMO_SCREENSHOT=path.png`` to keep
the screenshot (docs/demo.png is made this way).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-dev-shm-usage",
    "--window-size=1440,1100",
)
TIMEOUT_S = 120
# gradio's own queue code trips pandas deprecation warnings; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
LABELS = ["Effusion", "Mass", "Nodule"]


def _why_no_browser() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (run `bash scripts/install_browser.sh`)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
def browser():
    reason = _why_no_browser()
    if reason:
        print(f"skipping the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(TIMEOUT_S)
    yield driver
    driver.quit()


@pytest.fixture
def served_demo(tmp_path):
    from apps import demo
    from dira_zoo import hub
    from dira_zoo.models import create_classifier
    from dira_zoo.transforms import Preprocess

    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = hub.export(
        create_classifier("resnet18", len(LABELS)),
        tmp_path / "tiny",
        architecture="resnet18",
        label_names=LABELS,
        preprocess=Preprocess(input_size=(3, 128, 128)),
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = demo.build_app(str(folder))
    url = demo.launch(app, port=port, block=False)
    yield url
    app.close()


def test_upload_run_and_see_the_overlay(browser, served_demo, real_cxr, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    sample = real_cxr / "00000001_000.png"
    wait = WebDriverWait(browser, TIMEOUT_S)
    browser.get(served_demo)

    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    upload.send_keys(str(sample))
    # The upload finished when the file links to its copy on the server.
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#upload a[download='{sample.name}']")))
    browser.find_element(By.ID, "run").click()

    overlay = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#overlay img")))
    wait.until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay)
    )
    assert overlay.get_attribute("src").startswith(served_demo) and ".png" in overlay.get_attribute("src")
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) == 512
    table = browser.find_element(By.ID, "probabilities")
    wait.until(lambda d: all(label in table.text for label in LABELS))
    assert not browser.find_elements(By.CSS_SELECTOR, ".toast-body.error"), "the page shows an error"

    # Offline: every resource the page loaded came from the demo server itself.
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    foreign = [r for r in resources if not r.startswith((served_demo, "data:", "blob:"))]
    assert not foreign, foreign

    shot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("DIRA_DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DIRA_DEMO_SCREENSHOT"])
    print(f"screenshot: {shot}")
