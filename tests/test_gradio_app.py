"""The Gradio demo (gradio_app/): size limits, settings, examples, and the app served on 127.0.0.1 and
called through gradio_client exactly as an API user would (generated weights, synthetic BFM, the real
RetinaFace mobile0.25 detector, real photos)."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from gradio_app import DemoConfig, build_demo
from sgpn_arch.examples import find_example_images
from gradio_app.images import OversizeError, fit_to_limits
from sgpn_arch.restorer import FaceRestorer

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTO = "real_lq_whole/sgpn_0022.jpg"  # 355x505, one face
LIMITS = dict(max_side=600, max_pixels=400_000)  # the photo fits; the photo at 2x does not


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(demo):
    """Run ``demo`` on 127.0.0.1 (free port) in this process; yield its URL."""
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True,
                ssr_mode=False)
    try:
        yield demo.local_url
    finally:
        demo.close()


def _client(url: str) -> Client:
    return Client(url, verbose=False, download_files=True)


def _restore(client: Client, path, upscale=2, only_center_face=False, paste_back=True, visibility=1.0):
    return client.predict(handle_file(str(path)), upscale, only_center_face, paste_back, visibility,
                          api_name="/restore")


def _size(path) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image.shape[1], image.shape[0]


@pytest.fixture(scope="module")
def tiny_app(tiny_sgpn, retinaface_dir):
    """The demo with the tiny generated SGPN and the real mobile0.25 detector, served on 127.0.0.1."""

    def factory(upscale: int) -> FaceRestorer:
        return FaceRestorer(tiny_sgpn, device="cpu", upscale=upscale, detector="retinaface_mobile0.25",
                            detector_rootpath=retinaface_dir, allow_download=False)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        demo = build_demo(factory, config=DemoConfig(**LIMITS, oversize="downscale", device="cpu"), examples=[])
    with serve(demo) as url:
        yield url


# --- pieces -------------------------------------------------------------------------------------


def test_fit_to_limits_downscales_or_refuses():
    small = np.zeros((300, 200, 3), np.uint8)
    same, notice = fit_to_limits(small, 400, 100_000, "downscale")
    assert same is small and notice is None

    tall = np.zeros((1000, 400, 4), np.uint16)  # RGBA, 16 bit: channels and dtype survive
    fitted, notice = fit_to_limits(tall, 500, 1_000_000, "downscale")
    assert fitted.shape == (500, 200, 4) and fitted.dtype == np.uint16
    assert "400×1000" in notice and "200×500" in notice

    wide = np.zeros((1000, 2000), np.uint8)  # pixel-count limit binds before the side limit
    fitted, _ = fit_to_limits(wide, 4000, 500_000, "downscale")
    assert fitted.shape[0] * fitted.shape[1] <= 500_000 and fitted.shape == (500, 1000)

    with pytest.raises(OversizeError, match="2000×1000 pixels"):
        fit_to_limits(wide, 1500, 10_000_000, "refuse")


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("SGPN_MAX_SIDE", "1000")
    monkeypatch.setenv("SGPN_OVERSIZE", "refuse")
    monkeypatch.setenv("SGPN_CONCURRENCY", "3")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SGPN_KEEP_MEMORY", "0")
    config = DemoConfig.from_env()
    assert (config.max_side, config.oversize, config.concurrency, config.allow_download) == (1000, "refuse", 3, False)
    assert config.keep_memory is False and DemoConfig().keep_memory is True
    monkeypatch.setenv("SGPN_OVERSIZE", "crop")
    with pytest.raises(ValueError, match="SGPN_OVERSIZE"):
        DemoConfig.from_env()
    monkeypatch.setenv("SGPN_OVERSIZE", "refuse")
    monkeypatch.setenv("SGPN_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="SGPN_MAX_PIXELS"):
        DemoConfig.from_env()


def test_examples_come_from_installed_packages():
    examples = find_example_images()
    assert {path.name for path in examples} == {"grace_hopper.jpg", "astronaut.png"}
    for path in examples:
        assert path.is_file() and REPO_ROOT not in path.parents


# --- the served app -----------------------------------------------------------------------------


@pytest.mark.slow
def test_api_restores_a_real_photo(tiny_app, faces_dir):
    photo = faces_dir / PHOTO
    width, height = _size(photo)
    (before, after), restored, faces, download, status = _restore(_client(tiny_app), photo, upscale=2)

    expected = (2 * width, 2 * height)
    assert _size(before) == _size(after) == _size(restored) == _size(download) == expected
    assert Path(download).name == "sgpn_0022_sgpn_x2.png"
    # the download is the full-resolution result, pixel for pixel what the page shows
    np.testing.assert_array_equal(cv2.imread(download), cv2.imread(restored))
    # the face was replaced by the (random-weight) restoration; above the head, the photo is only resized
    difference = np.abs(cv2.imread(before).astype(int) - cv2.imread(after).astype(int)).max(axis=2)
    assert np.median(difference[height - 100:height + 100, width - 100:width + 100]) > 30
    assert np.median(difference[:50]) <= 2

    assert faces and len(faces) % 3 == 0
    assert [face["caption"] for face in faces[:3]] == ["face 1: input", "face 1: 3D shape prior", "face 1: restored"]
    assert all(_size(face["image"]) == (512, 512) for face in faces)
    assert status.startswith(f"Restored {len(faces) // 3} face")


@pytest.mark.slow
def test_api_options_and_oversize_downscale(tiny_app, faces_dir, tmp_path):
    photo = cv2.imread(str(faces_dir / PHOTO))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(photo, (2 * photo.shape[1], 2 * photo.shape[0])))  # 710x1010 > limits
    client = _client(tiny_app)

    (before, after), restored, faces, download, status = _restore(client, big, upscale=1)
    assert _size(restored) == _size(download) == (421, 600)  # 710x1010 scaled by 600/1010, upscale 1
    assert "downscaled to 421×600" in status

    slider, restored, faces, download, status = _restore(client, faces_dir / PHOTO, upscale=1, paste_back=False)
    assert slider is None and restored is None and download is None
    assert len(faces) == 3 and "Paste-back is off" in status


@pytest.mark.slow
def test_api_reports_no_face_and_bad_files(tiny_app, tmp_path):
    client = _client(tiny_app)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(AppError, match="No face was found"):
        _restore(client, blank)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    with pytest.raises(AppError, match="not an image the demo can read"):
        _restore(client, not_an_image)


@pytest.mark.slow
def test_without_weights_the_app_starts_and_explains(tmp_path, faces_dir, monkeypatch):
    for name in ("SGPN_WEIGHTS_SGPN", "SGPN_WEIGHTS_D3DFR", "SGPN_HF_REPO", "SGPN_BFM_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(tmp_path / "empty"))
    config = DemoConfig(max_side=300, max_pixels=90_000, oversize="refuse", device="cpu",
                        detector="retinaface_mobile0.25", allow_download=False)
    demo = build_demo(config=config, examples=[])  # the real default factory: weights zoo, no downloads

    with serve(demo) as url:
        page = httpx.get(f"{url}config", timeout=30).json()
        setup = next(c["props"] for c in page["components"] if c["props"].get("elem_id") == "sgpn-setup")
        assert setup["visible"] is True
        assert "not available" in setup["value"] and "sgpn.pth" in setup["value"]
        assert "SGPN_HF_REPO" in setup["value"] and "SGPN_BFM_DIR" in setup["value"]

        client = _client(url)
        small = tmp_path / "small.png"
        cv2.imwrite(str(small), cv2.imread(str(faces_dir / PHOTO))[:250, :250])
        with pytest.raises(AppError, match=r"SGPN generator.*not found"):
            _restore(client, small)
        with pytest.raises(AppError, match="355×505 pixels, larger than this demo accepts"):
            _restore(client, faces_dir / PHOTO)  # refused before the model is needed
