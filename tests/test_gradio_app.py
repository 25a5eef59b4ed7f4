"""The Gradio demo (gradio_app/): size limits, settings, examples, model loading in the background, and the app
served on 127.0.0.1 and called through gradio_client exactly as an API user would (generated weights, synthetic
BFM, the real RetinaFace mobile0.25 detector, real photos)."""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from gradio_app import DemoConfig, build_demo
from gradio_app.examples import PRESETS, degraded_examples
from gradio_app.images import OversizeError, ResultStore, fit_to_limits, plan_scale
from gradio_app.models import RestoreSettings
import sgpn_arch.pipeline.bg_upsampler  # noqa: F401  (registers the Real-ESRGAN weights in the zoo)
from sgpn_arch.pipeline.examples import find_example_images
from sgpn_arch.pipeline.restorer import RestoreResult
from sgpn_arch.zoo.weights import MODEL_ZOO

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTO = "real_lq_whole/sgpn_0022.jpg"  # 355x505, one face
# the photo fits; the photo at 2x does not; outputs above 800 px are previewed smaller on the page
LIMITS = dict(max_side=600, max_pixels=400_000, min_side=64, preview_max_side=800)
MODEL_ENV = ("SGPN_WEIGHTS_SGPN", "SGPN_WEIGHTS_D3DFR", "SGPN_HF_REPO", "SGPN_BFM_DIR", "SGPN_BUNDLE_URL",
             "SGPN_WEIGHTS_RETINAFACE_MOBILE025", "SGPN_WEIGHTS_RETINAFACE_RESNET50")


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


def _restore(client: Client, path, upscale=2, only_center_face=False, paste_back=True, visibility=1.0,
             face_parsing=False, fidelity="default", background=False):
    return client.predict(handle_file(str(path)), upscale, only_center_face, paste_back, visibility, face_parsing,
                          fidelity, background, api_name="/restore")


def _size(path) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image.shape[1], image.shape[0]


def _wait_for_model(client: Client, seconds: float = 120) -> str:
    """Poll the ``model_status`` endpoint until loading has finished; return its final Markdown."""
    deadline = time.monotonic() + seconds
    while True:
        status = client.predict(api_name="/model_status")
        if not status.startswith("⏳"):
            return status
        assert time.monotonic() < deadline, f"the model was still loading after {seconds} s: {status}"
        time.sleep(0.5)


def _offline_model_env(patch: pytest.MonkeyPatch, tmp: Path) -> None:
    """No weights anywhere the zoo looks, no mirror: what a fresh server sees."""
    for name in MODEL_ENV:
        patch.delenv(name, raising=False)
    patch.setenv("SGPN_WEIGHTS_DIR", str(tmp / "empty_weights_dir"))


def _random_realesrgan(folder: Path) -> Path:
    """Real-ESRGAN x2plus weights of the right layout with random values (the real file cannot be downloaded)."""
    import torch

    import basicsr_plugin.compat  # noqa: F401  (basicsr needs it with this torchvision)
    from basicsr.archs.rrdbnet_arch import RRDBNet

    torch.manual_seed(0)
    network = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
    path = folder / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def tiny_app(tiny_weights, bfm_dir, retinaface_dir, module_mktemp):
    """The demo with its real loader on the tiny generated SGPN and the real mobile0.25 detector, served locally."""
    with pytest.MonkeyPatch.context() as patch:
        _offline_model_env(patch, module_mktemp("weights"))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.setenv("SGPN_COMPILE", "0")   # compiling takes a minute on CPU: not what these tests check
        patch.setenv("SGPN_WEIGHTS_RETINAFACE_MOBILE025", str(retinaface_dir / "detection_mobilenet0.25_Final.pth"))
        patch.setenv("SGPN_WEIGHTS_REALESRGAN_X2PLUS", str(_random_realesrgan(module_mktemp("realesrgan"))))
        config = DemoConfig(**LIMITS, oversize="downscale", device="cpu", detector="retinaface_mobile0.25",
                            generator=str(tiny_weights["sgpn"]), d3dfr=str(tiny_weights["d3dfr"]),
                            bfm_dir=str(bfm_dir), allow_download=False, keep_memory=False)
        with serve(build_demo(config=config, examples=[])) as url:
            assert _wait_for_model(_client(url)) == ""
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


def test_plan_scale_caps_large_outputs_and_enlarges_tiny_photos():
    plan = plan_scale(1365, 2048, 4, min_side=256, max_output_side=4096)   # x4 of 2048 px would be 8192 px
    assert (plan.upscale, plan.pre, plan.restorer_upscale) == (2, 1, 2) and "×4 to ×2" in plan.notices[0]
    plan = plan_scale(100, 120, 2, min_side=256, max_output_side=4096)     # tiny: x3 first, then restored x1
    assert (plan.upscale, plan.pre, plan.restorer_upscale) == (2, 3, 1) and "enlarged ×3" in plan.notices[0]
    assert plan_scale(505, 355, 2, min_side=256, max_output_side=4096) == plan_scale(505, 355, 2, 64, 4096)
    assert plan_scale(505, 355, 2, 256, 4096).notices == ()


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("SGPN_MAX_SIDE", "1000")
    monkeypatch.setenv("SGPN_OVERSIZE", "refuse")
    monkeypatch.setenv("SGPN_CONCURRENCY", "3")
    monkeypatch.setenv("SGPN_KEEP_MEMORY", "0")
    monkeypatch.setenv("SGPN_DOWNLOAD_TIMEOUT", "2.5")
    monkeypatch.setenv("SGPN_MAX_FILE_SIZE", "5mb")
    config = DemoConfig.from_env()
    assert (config.max_side, config.oversize, config.concurrency, config.download_timeout) == (1000, "refuse", 3, 2.5)
    assert config.keep_memory is False and DemoConfig().keep_memory is True
    assert config.launch_options() == {"max_file_size": "5mb"}
    # HF_HUB_OFFLINE is huggingface_hub's business (it serves a mirror from its cache): downloads stay allowed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert DemoConfig.from_env().allow_download is True
    monkeypatch.setenv("SGPN_ALLOW_DOWNLOAD", "0")
    assert DemoConfig.from_env().allow_download is False
    monkeypatch.setenv("SGPN_OVERSIZE", "crop")
    with pytest.raises(ValueError, match="SGPN_OVERSIZE"):
        DemoConfig.from_env()
    monkeypatch.setenv("SGPN_OVERSIZE", "refuse")
    monkeypatch.setenv("SGPN_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="SGPN_MAX_PIXELS"):
        DemoConfig.from_env()


def test_readme_documents_every_setting():
    """Every variable the app reads, and the weight variables of every network it can load, are in the Space card."""
    readme = (REPO_ROOT / "gradio_app" / "README.md").read_text(encoding="utf-8")
    read_by_app = set()
    for source in (REPO_ROOT / "gradio_app").glob("*.py"):
        read_by_app |= set(re.findall(r'"(SGPN_[A-Z0-9_]+)"', source.read_text(encoding="utf-8")))
    assert {"SGPN_MAX_FILE_SIZE", "SGPN_CONCURRENCY", "SGPN_DOWNLOAD_TIMEOUT"} <= read_by_app
    networks = ("sgpn", "d3dfr", "retinaface_resnet50", "retinaface_mobile0.25", "parsenet", "realesrgan_x2plus")
    weights = {MODEL_ZOO[name].env_var for name in networks}
    pipeline = {"SGPN_WEIGHTS_DIR", "SGPN_BFM_DIR", "SGPN_HF_REPO", "SGPN_BUNDLE_URL", "HF_HUB_OFFLINE", "SGPN_COMPILE",
                "SGPN_CACHE_DIR"}
    undocumented = sorted(name for name in read_by_app | weights | pipeline if f"`{name}`" not in readme)
    assert not undocumented, f"gradio_app/README.md does not document {undocumented}"


def test_result_store_prunes_old_results_and_keeps_examples():
    store = ResultStore(max_age_s=0.0)   # everything saved before is old
    examples = degraded_examples(store.kept)
    first = store.save(np.zeros((8, 8, 3), np.uint8), "a.png")
    time.sleep(0.01)
    second = store.save(np.zeros((8, 8, 3), np.uint8), "a.png")
    assert not first.exists() and second.exists() and first != second
    assert examples and all(path.is_file() for path, _ in examples)


def test_examples_are_degraded_public_domain_portraits(tmp_path):
    portraits = find_example_images()
    assert {path.name for path in portraits} == {"grace_hopper.jpg", "astronaut.png"}
    assert all(path.is_file() and REPO_ROOT not in path.parents for path in portraits)
    examples = degraded_examples(tmp_path, portraits)
    assert [preset.name for _, preset in examples] == ["grace_hopper", "astronaut"]
    for (path, preset), portrait in zip(examples, portraits):
        original = cv2.imread(str(portrait))
        degraded = cv2.imread(str(path))
        assert degraded.shape[:2] == (original.shape[0] // preset.shrink, original.shape[1] // preset.shrink)
        sharp = cv2.resize(original, degraded.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert cv2.Laplacian(degraded, cv2.CV_64F).var() < 0.5 * cv2.Laplacian(sharp, cv2.CV_64F).var()  # blurred
    again = degraded_examples(tmp_path / "again", portraits)
    assert all(np.array_equal(cv2.imread(str(a)), cv2.imread(str(b))) for (a, _), (b, _) in zip(examples, again))
    assert PRESETS["astronaut"].face_parsing and not PRESETS["grace_hopper"].face_parsing


# --- model loading: in the background, every missing file named, bounded waits ---------------------------------


def _banner_once_loaded(demo, seconds: float = 60) -> str:
    with serve(demo) as url:
        return _wait_for_model(_client(url), seconds)


def test_banner_names_every_missing_file(tmp_path, monkeypatch):
    _offline_model_env(monkeypatch, tmp_path)
    config = DemoConfig(device="cpu", detector="retinaface_mobile0.25", allow_download=False, keep_memory=False)
    banner = _banner_once_loaded(build_demo(config=config, examples=[]))
    assert banner.startswith("### The restoration model is not available")
    for missing in ("sgpn.pth", "d3dfr_finetune_ours.pth", "BFM", "detection_mobilenet0.25_Final.pth"):
        assert missing in banner, f"{missing} is not named in the banner:\n{banner}"
    assert "SGPN_WEIGHTS_DIR" in banner and "SGPN_BFM_DIR" in banner


def test_banner_shows_why_a_download_failed(tmp_path, monkeypatch, retinaface_dir):
    _offline_model_env(monkeypatch, tmp_path)
    monkeypatch.setenv("SGPN_WEIGHTS_RETINAFACE_MOBILE025", str(retinaface_dir / "detection_mobilenet0.25_Final.pth"))
    monkeypatch.setenv("SGPN_BUNDLE_URL", f"http://127.0.0.1:{_free_port()}/sgpn_bundle.zip")   # nobody listens
    config = DemoConfig(device="cpu", detector="retinaface_mobile0.25", download_timeout=5, keep_memory=False)
    banner = _banner_once_loaded(build_demo(config=config, examples=[]))
    assert "Connection refused" in banner and "sgpn.pth" in banner


def test_a_silent_server_neither_blocks_start_up_nor_loading(tmp_path, monkeypatch, retinaface_dir):
    """A download source that accepts connections and never answers: the page is served at once, shows the
    loading state, and loading gives up after the configured timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(silent.accept()) for _ in range(16)], daemon=True).start()
    _offline_model_env(monkeypatch, tmp_path)
    monkeypatch.setenv("SGPN_WEIGHTS_RETINAFACE_MOBILE025", str(retinaface_dir / "detection_mobilenet0.25_Final.pth"))
    monkeypatch.setenv("SGPN_BUNDLE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/sgpn_bundle.zip")
    config = DemoConfig(device="cpu", detector="retinaface_mobile0.25", download_timeout=1.5, keep_memory=False)
    try:
        built = []
        builder = threading.Thread(target=lambda: built.append(build_demo(config=config, examples=[])), daemon=True)
        builder.start()
        builder.join(20)
        assert built, "build_demo waited for the weights: the server could not start"
        start = time.monotonic()
        with serve(built[0]) as url:
            assert httpx.get(url, timeout=10).status_code == 200
            client = _client(url)
            assert client.predict(api_name="/model_status").startswith("⏳ **Loading the model**")
            banner = _wait_for_model(client, 60)
        assert time.monotonic() - start < 60
        assert accepted, "the silent server was never asked"
        assert "timed out" in banner.lower() and "sgpn.pth" in banner
    finally:
        silent.close()
        for connection, _ in accepted:
            connection.close()


class _MeetingRestorer:
    """Stands in for FaceRestorer: each restore waits until another restore is running at the same time."""

    device = None

    def __init__(self, barrier: threading.Barrier):
        self.barrier = barrier

    def restore(self, image, *, only_center_face, paste_back, visibility, on_face):
        self.barrier.wait()   # raises BrokenBarrierError when restorations are serialised
        face = np.zeros((512, 512, 3), np.uint8)
        return RestoreResult([face], [face], [face], restored_image=np.zeros_like(image))


@pytest.mark.slow
def test_concurrency_setting_runs_restorations_in_parallel(tmp_path, faces_dir):
    barrier = threading.Barrier(2, timeout=20)
    built: list[RestoreSettings] = []

    def load(report):
        def factory(settings: RestoreSettings):
            built.append(settings)
            return _MeetingRestorer(barrier)
        return factory

    with serve(build_demo(load, config=DemoConfig(concurrency=2, min_side=64), examples=[])) as url:
        client = _client(url)
        jobs = [client.submit(handle_file(str(faces_dir / PHOTO)), 2, False, True, 1.0, False, "default", False,
                              api_name="/restore") for _ in range(2)]
        statuses = [job.result(timeout=60)[4] for job in jobs]
    assert all(status.startswith("Restored 1 face") for status in statuses)
    assert built == [RestoreSettings(2), RestoreSettings(2)]   # one restorer per concurrent request


# --- the served app -----------------------------------------------------------------------------


@pytest.mark.slow
def test_api_restores_a_real_photo(tiny_app, faces_dir):
    photo = faces_dir / PHOTO
    width, height = _size(photo)
    (before, after), restored, faces, download, status = _restore(_client(tiny_app), photo, upscale=1)

    assert _size(before) == _size(after) == _size(restored) == _size(download) == (width, height)
    assert Path(download).name == Path(restored).name == "sgpn_0022_sgpn_x1.png"   # one file, not two
    np.testing.assert_array_equal(cv2.imread(download), cv2.imread(restored))
    # the face was replaced by the (random-weight) restoration; above the head, the photo is unchanged
    difference = np.abs(cv2.imread(before).astype(int) - cv2.imread(after).astype(int)).max(axis=2)
    assert np.median(difference[height // 2 - 50:height // 2 + 50, width // 2 - 50:width // 2 + 50]) > 30
    assert np.median(difference[:25]) <= 2

    assert faces and len(faces) % 3 == 0
    assert [face["caption"] for face in faces[:3]] == ["face 1: input", "face 1: 3D shape prior", "face 1: restored"]
    assert all(_size(face["image"]) == (512, 512) for face in faces)
    assert status.startswith(f"Restored {len(faces) // 3} face")


@pytest.mark.slow
def test_api_sends_a_large_result_once_at_full_size(tiny_app, faces_dir):
    """x2 gives 710x1010, above the 800 px preview size: only the download is full size, named for saving."""
    (before, after), restored, faces, download, status = _restore(_client(tiny_app), faces_dir / PHOTO, upscale=2)
    assert _size(download) == (710, 1010) and Path(download).name == "sgpn_0022_sgpn_x2.png"
    assert _size(restored) == _size(after) == _size(before) == (562, 800)
    assert Path(restored).name == Path(after).name == "sgpn_0022_sgpn_x2_preview.png"


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

    tiny = tmp_path / "tiny.png"   # 44x63: enlarged before detection, output still 2x the upload
    cv2.imwrite(str(tiny), cv2.resize(photo, (44, 63), interpolation=cv2.INTER_AREA))
    *_, download, status = _restore(client, tiny, upscale=2)
    assert _size(download) == (88, 126) and "enlarged ×2 before face detection" in status

    with pytest.raises(AppError, match=r"Model not available: .*parsing_parsenet\.pth"):   # offline, not cached
        _restore(client, faces_dir / PHOTO, upscale=1, face_parsing=True)


@pytest.mark.slow
def test_api_background_upscaling_goes_through_realesrgan(tiny_app, faces_dir, tmp_path):
    small = tmp_path / "small.png"   # 90x128: Real-ESRGAN on the CPU stays quick
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(faces_dir / PHOTO)), (90, 128), interpolation=cv2.INTER_AREA))
    client = _client(tiny_app)
    *_, resized, _ = _restore(client, small, upscale=2)
    *_, upscaled, status = _restore(client, small, upscale=2, background=True)
    assert _size(resized) == _size(upscaled) == (180, 256) and status.startswith("Restored 1 face")
    # random Real-ESRGAN weights: a background (the bottom corners) nothing like the Lanczos-resized one
    difference = np.abs(cv2.imread(resized).astype(int) - cv2.imread(upscaled).astype(int)).max(axis=2)
    assert difference[-30:, :30].mean() > 20 and difference[-30:, -30:].mean() > 20


@pytest.mark.slow
def test_api_reports_no_face_and_bad_files(tiny_app, tmp_path, faces_dir):
    client = _client(tiny_app)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(AppError, match="No face found: try a photo"):
        _restore(client, blank)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    with pytest.raises(AppError, match="Bad file: notes.png is not an image the demo can read"):
        _restore(client, not_an_image)
    truncated = tmp_path / "cut_short.jpg"   # PIL opens it lazily; decoding fails
    truncated.write_bytes((faces_dir / PHOTO).read_bytes()[:6000])
    with pytest.raises(AppError) as error:
        _restore(client, truncated)
    assert "cut_short.jpg could not be read" in str(error.value) and "/tmp" not in str(error.value)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_display_copies_of_every_channel_layout(channels):
    from gradio_app.images import to_display

    image = np.full((6, 5, channels), 200, np.uint16) * 257
    image[..., -1] = 0 if channels in (2, 4) else image[..., -1]          # alpha fully transparent
    shown = to_display(image[..., 0] if channels == 1 else image)
    assert shown.dtype == np.uint8 and shown.shape == (6, 5, 4 if channels in (2, 4) else 3)
    assert (shown[..., :3] == 200).all() and (channels not in (2, 4) or (shown[..., 3] == 0).all())
