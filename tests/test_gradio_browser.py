"""The web demo in a real browser: `python gradio_app/app.py` configured through its environment variables
(generated weights, synthetic BFM, the real RetinaFace mobile0.25 detector, downloads off), driven by
Playwright with Debian's headless Chromium: upload a real photo, press Restore, wait for the results."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's `chromium` package; Playwright downloads no browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PHOTO = "real_lq_whole/sgpn_0022.jpg"  # 355x505, one face


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI: install it with `apt-get install -y chromium`")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium); the browser test runs in CI")
    return CHROMIUM


@pytest.fixture(scope="module")
def app_url(tiny_weights, bfm_dir, retinaface_dir, tmp_path_factory):
    """`python gradio_app/app.py` on 127.0.0.1, configured only through the environment."""
    port = _free_port()
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_SSR_MODE="false", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2",
               SGPN_WEIGHTS_SGPN=str(tiny_weights["sgpn"]), SGPN_WEIGHTS_D3DFR=str(tiny_weights["d3dfr"]),
               SGPN_BFM_DIR=str(bfm_dir), SGPN_DEVICE="cpu", SGPN_DETECTOR="retinaface_mobile0.25",
               SGPN_WEIGHTS_RETINAFACE_MOBILE025=str(retinaface_dir / "detection_mobilenet0.25_Final.pth"))
    log_path = tmp_path_factory.mktemp("gradio_app") / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "gradio_app" / "app.py")], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with code {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not start within 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_browser_upload_restore_and_show_results(chromium, app_url, faces_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    outside = []

    def local_only(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:  # no network in tests: anything else the page asks for is refused and recorded
            outside.append(route.request.url)
            route.abort()

    screenshot = tmp_path / "gradio_demo.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.route("**/*", local_only)
            page.goto(app_url)
            page.wait_for_selector("#sgpn-restore", timeout=60_000)
            assert page.get_by_text("Public-domain examples").is_visible()
            assert not page.locator("#sgpn-setup").is_visible()  # weights found: no set-up explanation

            page.set_input_files("#sgpn-input input[type=file]", str(faces_dir / PHOTO))
            page.wait_for_selector("#sgpn-input img", timeout=30_000)
            page.click("#sgpn-restore")
            page.wait_for_selector("#sgpn-restored img", timeout=120_000)
            page.wait_for_selector("#sgpn-faces img", timeout=30_000)
            page.wait_for_function(
                "document.querySelector('#sgpn-restored img').complete"
                " && document.querySelector('#sgpn-restored img').naturalWidth > 0")

            assert page.inner_text("#sgpn-status").startswith("Restored 1 face")
            size = page.eval_on_selector("#sgpn-restored img", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == [710, 1010]  # 355x505 at the default upscale 2
            assert page.locator("#sgpn-slider img").count() == 2
            assert page.locator("#sgpn-faces img").count() == 3
            link = page.locator("#sgpn-download a[href]").first.get_attribute("href")
            assert link.endswith("sgpn_0022_sgpn_x2.png")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 50_000
    assert not outside, f"the page tried to reach the network: {outside}"
