"""The web demo as a Space runs it: the Space folder built by gradio_app/build_space.py, started with `python
app.py` inside it and configured only through environment variables (offline: generated weights served from a
Hugging Face cache with HF_HUB_OFFLINE=1, synthetic BFM, the real RetinaFace mobile0.25 detector; a 1 MB upload
limit), checked over HTTP and driven by Playwright with Debian's headless Chromium: uploads (TIFF, a non-image),
Restore on a four-face photo, what the page shows."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import cv2
import httpx
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's `chromium` package; Playwright downloads no browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PHOTO = "real_lq_whole/sgpn_0022.jpg"  # 355x505, one face
MIRROR = "lab/sgpn-mirror"             # a made-up mirror name: it exists only in the test's Hugging Face cache


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> Path:
    """Lay out a Hugging Face cache holding ``files`` of model ``repo`` at revision main (as a download leaves it)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, payload in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(payload).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(payload)
        snapshot = repo_dir / "snapshots" / commit / name
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    return root


def _mirror_payload(weights: Path, name: str) -> bytes:
    """The bytes a mirror holds for ``weights`` under ``name`` (a .safetensors conversion when asked)."""
    if not name.endswith(".safetensors"):
        return weights.read_bytes()
    from safetensors.torch import save

    from sgpn_arch.zoo.checkpoints import load_state_dict_file

    return save({key: value.contiguous() for key, value in load_state_dict_file(weights).items()})


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI: install it with `apt-get install -y chromium`")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium); the browser test runs in CI")
    return CHROMIUM


def start_app(command: list[str], env: dict[str, str], cwd: Path, log_path: Path, seconds: float = 180):
    """Start the app process and wait until it serves its page; return (process, url)."""
    port = _free_port()
    env = dict(env, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_SSR_MODE="false", OMP_NUM_THREADS="2")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"the app exited with code {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_app(process)
            pytest.fail(f"the app did not serve its page within {seconds} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_model(url: str, seconds: float = 120) -> str:
    from gradio_client import Client

    client = Client(url, verbose=False)
    deadline = time.monotonic() + seconds
    while (status := client.predict(api_name="/model_status")).startswith("⏳"):
        assert time.monotonic() < deadline, f"the model was still loading after {seconds} s"
        time.sleep(0.5)
    return status


@pytest.fixture(scope="module")
def app_url(tiny_weights, bfm_dir, retinaface_dir, module_mktemp):
    """The built Space's `python app.py` on 127.0.0.1, offline; SGPN and D3DFR only in the Hugging Face cache of a
    mirror. Nothing of the checkout is on its path: it runs the packages copied into the Space."""
    from gradio_app.build_space import build_space
    from sgpn_arch.zoo.weights import MODEL_ZOO

    folder = module_mktemp("gradio_app")
    space = build_space(folder / "space")
    mirror = {MODEL_ZOO[name].hf_filename: _mirror_payload(tiny_weights[name], MODEL_ZOO[name].hf_filename)
              for name in ("sgpn", "d3dfr")}
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SGPN_", "HF_", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub_cache(folder / "hub", MIRROR, mirror)), SGPN_HF_REPO=MIRROR,
               SGPN_WEIGHTS_DIR=str(folder / "empty"), SGPN_BFM_DIR=str(bfm_dir), SGPN_DEVICE="cpu",
               SGPN_DETECTOR="retinaface_mobile0.25", SGPN_MAX_FILE_SIZE="1mb", SGPN_KEEP_MEMORY="0",
               SGPN_COMPILE="0",   # compiling takes a minute on CPU: not what these tests check
               SGPN_WEIGHTS_RETINAFACE_MOBILE025=str(retinaface_dir / "detection_mobilenet0.25_Final.pth"))
    process, url = start_app([sys.executable, "app.py"], env, space, folder / "app.log")
    try:
        yield url
    finally:
        stop_app(process)


@pytest.mark.slow
def test_weights_from_the_hugging_face_cache_while_offline(app_url):
    assert wait_for_model(app_url) == ""   # '' = ready: no set-up explanation


@pytest.mark.slow
def test_upload_size_limit_from_environment(app_url):
    big = np.random.default_rng(0).integers(0, 256, 1_500_000, dtype=np.uint8).tobytes()   # 1.5 MB > 1 MB
    refused = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=30)
    assert refused.status_code == 413, refused.text
    small = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("small.png", big[:200_000], "image/png")},
                       timeout=30)
    assert small.status_code == 200


@pytest.mark.slow
def test_browser_uploads_restore_and_results(chromium, app_url, faces_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = cv2.imread(str(faces_dir / PHOTO))
    tiff, notes, blank, group = tmp_path / "portrait.tif", tmp_path / "notes.png", tmp_path / "blank.png", tmp_path / "group.png"
    cv2.imwrite(str(tiff), photo)
    notes.write_text("this is not an image")
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    cv2.imwrite(str(group), np.vstack([np.hstack([photo, photo])] * 2))   # four faces, 710x1010
    wait_for_model(app_url)
    outside = []

    def local_only(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:  # no network in tests: anything else the page asks for is refused and recorded
            outside.append(route.request.url)
            route.abort()

    def shown(selector: str) -> list[int]:
        return page.eval_on_selector_all(selector, "imgs => imgs.map(img => img.complete ? img.naturalWidth : -1)")

    def toasts() -> str:
        return "\n".join(page.locator("[data-testid='toast-body']").all_inner_texts())

    screenshot = tmp_path / "gradio_demo.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.route("**/*", local_only)
            page.goto(app_url)
            page.wait_for_selector("#sgpn-restore", timeout=60_000)
            assert page.get_by_text("Degraded public-domain examples").is_visible()
            page.locator("table tbody tr").nth(1).click()   # the astronaut: its photo and its preset settings
            page.wait_for_function("document.querySelector('#sgpn-input img')?.src.endsWith('/astronaut_degraded.png')",
                                   timeout=30_000)
            assert page.get_by_label("Face-parsing mask").is_checked()
            assert page.eval_on_selector_all("input[type=number]", "inputs => inputs.map(i => i.value)") == ["2", "0.9"]
            page.get_by_label("Face-parsing mask").uncheck()   # its network is not in this offline test
            assert not page.locator("#sgpn-setup").is_visible()  # weights found: no set-up explanation
            upload = "#sgpn-input input[type=file]"

            page.set_input_files(upload, str(tiff))   # browsers cannot show TIFF: the page gets a PNG copy
            page.wait_for_function("(img => img?.src.endsWith('/portrait.png') && img.complete && img.naturalWidth == 355)"
                                   "(document.querySelector('#sgpn-input img'))", timeout=30_000)

            page.set_input_files(upload, str(notes))  # told at once, no broken preview left behind
            page.wait_for_selector("[data-testid='toast-body']", timeout=30_000)
            assert "Bad file: notes.png is not an image" in toasts()
            page.wait_for_function("!document.querySelector('#sgpn-input img')", timeout=10_000)
            page.locator("[data-testid='toast-close']").first.click()

            page.set_input_files(upload, str(blank))  # the error's title reaches the toast
            page.wait_for_selector("#sgpn-input img", timeout=30_000)
            page.click("#sgpn-restore")
            page.wait_for_function("[...document.querySelectorAll(\"[data-testid='toast-body']\")]"
                                   ".some(t => t.innerText.includes('No face found'))", timeout=60_000)

            page.set_input_files(upload, str(group))
            page.wait_for_function("document.querySelector('#sgpn-input img')?.src.includes('group')", timeout=30_000)
            page.click("#sgpn-restore")
            page.wait_for_function("document.querySelectorAll('#sgpn-faces img').length == 12", timeout=120_000)
            page.wait_for_function(
                "document.querySelector('#sgpn-restored img')?.complete"
                " && document.querySelector('#sgpn-restored img').naturalWidth > 0", timeout=30_000)
            assert page.inner_text("#sgpn-status").startswith("Restored 4 faces")
            assert shown("#sgpn-restored img") == [1420]   # 710x1010 at the default upscale 2
            assert page.locator("#sgpn-slider img").count() == 2
            # every download control saves the named full-resolution result, not "image.png"
            names = page.eval_on_selector_all("#sgpn-slider a[download], #sgpn-restored a[download], #sgpn-download a",
                                              "links => links.map(a => a.getAttribute('download') || a.href)")
            assert len(names) >= 3 and all(name.endswith("group_sgpn_x2.png") for name in names), names
            # the four faces' twelve pictures all fit the gallery: nothing hidden below its bottom edge
            bottom, lowest = page.eval_on_selector("#sgpn-faces", """gallery => [gallery.getBoundingClientRect().bottom,
                Math.max(...[...gallery.querySelectorAll('img')].map(img => img.getBoundingClientRect().bottom))]""")
            assert lowest <= bottom, f"the Faces gallery hides pictures ({lowest:.0f} px > {bottom:.0f} px)"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 50_000
    assert not outside, f"the page tried to reach the network: {outside}"
