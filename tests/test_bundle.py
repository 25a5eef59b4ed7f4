"""The official release bundle: download (gdown, local HTTP), import, recognition by content, export, errors.

Bundles are built here in the official layout (``checkpoints/sgpn.pth``, ``d3dfr_finetune_ours.pth``,
``yoloface_v5m.pt``, ``BFM/``) from generated weights and the synthetic BFM, and in other shapes (renamed and
nested members, tar, a plain folder).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sgpn_arch.cli import main
from sgpn_arch.zoo import bundle, weights
from sgpn_arch.zoo.bundle import BundleError, install_bundle
from sgpn_arch.zoo.weights import WeightsError, resolve_bfm_folder, resolve_weights

REPO_ROOT = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_fake_yolo(path: Path, tmp: Path) -> None:
    """A whole pickled model whose class lives in a module ``models.yolo``, as YOLOv5 checkpoints are."""
    package = tmp / "yolo_src" / "models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "yolo.py").write_text("import torch\nclass Model(torch.nn.Module):\n"
                                     "    def __init__(self):\n        super().__init__()\n"
                                     "        self.conv = torch.nn.Conv2d(3, 4, 1)\n")
    sys.path.insert(0, str(package.parent))
    try:
        from models.yolo import Model

        torch.save({"model": Model(), "epoch": -1}, path)
    finally:
        sys.path.remove(str(package.parent))
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def official_folder(module_mktemp, tiny_weights, bfm_dir) -> Path:
    """A ``checkpoints/`` folder laid out as the official release (generated weights, synthetic BFM)."""
    root = module_mktemp("release") / "checkpoints"
    (root / "BFM").mkdir(parents=True)
    shutil.copy(tiny_weights["sgpn"], root / "sgpn.pth")
    shutil.copy(tiny_weights["d3dfr"], root / "d3dfr_finetune_ours.pth")
    _write_fake_yolo(root / "yoloface_v5m.pt", module_mktemp("yolo"))
    for name in weights.BFM_FILES:
        shutil.copy(bfm_dir / name, root / "BFM" / name)
    (root / "BFM" / "std_exp.txt").write_text(" ".join(f"{v:.6f}" for v in np.linspace(1e4, 1e2, 79)))
    return root


def _zip(folder: Path, target: Path, rename: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> Path:
    """Zip ``folder`` (its name as the top folder), members renamed by ``rename`` (relative path -> archive name)."""
    rename = rename or {}
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            rel = str(path.relative_to(folder))
            if path.is_file() and rel not in skip:
                archive.write(path, rename.get(rel, f"{folder.name}/{rel}"))
    return target


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """An empty weights folder; no weight or BFM variables; no Hub mirror."""
    for key in list(os.environ):
        if key.startswith("SGPN_WEIGHTS_") or key in (weights.HF_REPO_ENV, weights.BFM_ENV, bundle.BUNDLE_URL_ENV):
            monkeypatch.delenv(key)
    folder = tmp_path / "cache"
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(folder))
    return folder


def _assert_installed(cache: Path, folder: Path) -> None:
    assert _sha(cache / "sgpn.pth") == _sha(folder / "sgpn.pth")
    assert _sha(cache / "d3dfr_finetune_ours.pth") == _sha(folder / "d3dfr_finetune_ours.pth")
    for name in (*weights.BFM_FILES, "std_exp.txt"):
        assert _sha(cache / "BFM" / name) == _sha(folder / "BFM" / name)
    assert sorted(p.name for p in cache.iterdir()) == ["BFM", "bundle.json", "d3dfr_finetune_ours.pth", "sgpn.pth"]
    assert resolve_weights("sgpn", allow_download=False) == cache / "sgpn.pth"
    assert resolve_bfm_folder() == cache / "BFM"


def _assert_nothing_installed(cache: Path) -> None:
    leftovers = sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []
    assert leftovers == [], leftovers


# ------------------------------------------------------------------------------------------ import from disk

def test_import_recognises_renamed_nested_members_by_content(official_folder, cache, tmp_path, capsys):
    archive = _zip(official_folder, tmp_path / "SGPN release (1).zip", rename={
        "sgpn.pth": "release/weights/final_G.pth", "d3dfr_finetune_ours.pth": "release/weights/recon_net.pt",
        "yoloface_v5m.pt": "release/detector.bin", "BFM/BFM09_model_info.mat": "release/3dmm/face.mat",
        "BFM/similarity_Lm3D_all.mat": "release/3dmm/lm3d.mat", "BFM/std_exp.txt": "release/3dmm/numbers.txt"})
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr("release/README.txt", "SGPN release\n")
        handle.writestr("__MACOSX/release/._final_G.pth", b"\x00\x05\x16\x07")
    assert main(["weights", "import", str(archive)]) == 0
    out = capsys.readouterr().out
    _assert_installed(cache, official_folder)
    for installed in ("sgpn.pth", "d3dfr_finetune_ours.pth", "BFM/BFM09_model_info.mat", "BFM/std_exp.txt"):
        line = next(line for line in out.splitlines() if line.strip().startswith(installed))
        assert _sha(cache / installed) in line
    assert "from SGPN release (1).zip/release/weights/final_G.pth" in out
    assert "release/detector.bin: a pickled YOLOv5" in out and "release/README.txt" in out
    assert out.count("Basel Face Model 2009") == 1


@pytest.mark.parametrize("form", ["folder", "tar.gz", "single zip in a zip"])
def test_import_folder_and_archive_forms(official_folder, cache, tmp_path, form):
    if form == "folder":
        source = official_folder
    elif form == "tar.gz":
        source = tmp_path / "bundle.download"          # the format is read from the content, not the name
        with tarfile.open(source, "w:gz") as handle:
            handle.add(official_folder, arcname="checkpoints")
    else:
        inner = _zip(official_folder, tmp_path / "inner.zip")
        source = tmp_path / "outer.zip"
        with zipfile.ZipFile(source, "w") as handle:
            handle.write(inner, "download/checkpoints.zip")
    report = install_bundle(source)
    _assert_installed(cache, official_folder)
    assert report.bfm_installed and set(report.installed) == set(bundle.ROLE_TARGETS)
    if form == "folder":
        assert (official_folder / "sgpn.pth").is_file()          # the user's folder is copied, not moved


def test_import_replaces_an_earlier_install_whole(official_folder, cache, tmp_path):
    install_bundle(official_folder)
    (cache / "BFM" / "stale.mat").write_bytes(b"old")
    (cache / "sgpn.safetensors").write_bytes(b"an older safetensors copy")
    install_bundle(official_folder)
    _assert_installed(cache, official_folder)


def test_two_files_of_one_kind_tie_break_on_the_official_name(official_folder, cache, tmp_path):
    folder = tmp_path / "checkpoints"
    shutil.copytree(official_folder, folder)
    shutil.copy(folder / "d3dfr_finetune_ours.pth", folder / "d3dfr_opensource.pth")
    report = install_bundle(folder)
    assert report.installed["d3dfr"][2].endswith("/d3dfr_finetune_ours.pth")
    assert any(m.name.endswith("d3dfr_opensource.pth") and "used instead" in m.what for m in report.skipped)
    (folder / "d3dfr_finetune_ours.pth").rename(folder / "recon_b.pth")
    with pytest.raises(BundleError, match="several files that could be d3dfr_finetune_ours.pth"):
        install_bundle(folder)


# ----------------------------------------------------------------------------------------- bad bundles

def test_bundle_without_generator_installs_nothing(official_folder, cache, tmp_path):
    archive = _zip(official_folder, tmp_path / "bundle.zip", skip=("sgpn.pth",))
    with pytest.raises(BundleError) as error:
        install_bundle(archive)
    message = str(error.value)
    assert "no SGPN generator" in message and "sgpn weights import" in message and "yoloface_v5m.pt" in message
    _assert_nothing_installed(cache)


def test_foreign_checkpoint_in_place_of_the_generator_is_named(official_folder, cache, tmp_path):
    folder = tmp_path / "checkpoints"
    shutil.copytree(official_folder, folder)
    gfpgan_like = {"conv_body_first.weight": torch.zeros(1), "final_linear.weight": torch.zeros(1),
                   "stylegan_decoder.style_mlp.1.weight": torch.zeros(1), "condition_scale.0.0.weight": torch.zeros(1)}
    torch.save({"params_ema": gfpgan_like}, folder / "sgpn.pth")
    with pytest.raises(BundleError, match=r"sgpn.pth: a GFPGAN v1.2/v1.3/v1.4 generator"):
        install_bundle(folder)
    _assert_nothing_installed(cache)


def test_damaged_archive_installs_nothing(official_folder, cache, tmp_path):
    whole = _zip(official_folder, tmp_path / "bundle.zip").read_bytes()
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BundleError, match="damaged zip archive"):
        install_bundle(damaged)
    _assert_nothing_installed(cache)


def test_archive_members_outside_the_folder_are_refused(official_folder, cache, tmp_path):
    archive = _zip(official_folder, tmp_path / "bundle.zip")
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr("../../escaped.txt", "1 2 3")
    with pytest.raises(BundleError, match=r"members outside its folder \(../../escaped.txt\)"):
        install_bundle(archive)
    _assert_nothing_installed(cache)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_bfm_half_present_is_refused(official_folder, cache, tmp_path):
    archive = _zip(official_folder, tmp_path / "bundle.zip", skip=("BFM/similarity_Lm3D_all.mat",))
    with pytest.raises(BundleError, match="BFM09_model_info.mat without similarity_Lm3D_all.mat"):
        install_bundle(archive)
    _assert_nothing_installed(cache)


# ------------------------------------------------------------------------------------- download (gdown)

class BundleServer(http.server.BaseHTTPRequestHandler):
    """Serves ``payload`` at any path; honours ``Range``; ``cut`` bytes: the first answer stops after that many."""

    payload = b""
    cut: int | None = None
    requests: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(dict(self.headers))
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            start = int(ranged[6:].split("-")[0])
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.end_headers()
        if type(self).cut is not None:
            body, type(self).cut = body[: type(self).cut], None
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def serve(monkeypatch):
    """Serve bytes from 127.0.0.1 and point ``SGPN_BUNDLE_URL`` at them; yields a function(payload, cut)."""
    servers = []

    def start(payload: bytes, cut: int | None = None) -> type[BundleServer]:
        handler = type("Handler", (BundleServer,), {"payload": payload, "cut": cut, "requests": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv(bundle.BUNDLE_URL_ENV, f"http://127.0.0.1:{server.server_address[1]}/release/bundle")
        return handler

    yield start
    for server in servers:
        server.shutdown()


@pytest.mark.slow
def test_download_then_restore_with_no_weight_options(official_folder, cache, tmp_path, serve, faces_dir,
                                                      retinaface_dir, capsys):
    handler = serve(_zip(official_folder, tmp_path / "bundle.zip").read_bytes())
    assert main(["weights", "download", "sgpn", "d3dfr"]) == 0
    out = capsys.readouterr().out
    assert "installed from http://127.0.0.1" in out and _sha(cache / "sgpn.pth") in out
    _assert_installed(cache, official_folder)
    assert len(handler.requests) == 1 and not (cache / "downloads").exists()

    photo = sorted((faces_dir / "real_lq_whole").glob("*.jpg"))[0]
    out_dir = tmp_path / "results"
    code = main(["restore", "-i", str(photo), "-o", str(out_dir), "--detector", "retinaface_mobile0.25",
                 "--detector-dir", str(retinaface_dir), "--offline"])
    assert code == 0
    assert len(list((out_dir / "restored_imgs").iterdir())) == 1 and list((out_dir / "restored_faces").iterdir())


def test_interrupted_download_resumes(official_folder, cache, tmp_path, serve):
    payload = _zip(official_folder, tmp_path / "bundle.zip").read_bytes()
    handler = serve(payload, cut=len(payload) // 3)
    with pytest.raises(BundleError, match="cannot download the SGPN release bundle"):
        bundle.download_bundle(quiet=True)
    partial = list((cache / "downloads").iterdir())
    assert len(partial) == 1 and 0 < partial[0].stat().st_size <= len(payload) // 3
    kept = partial[0].stat().st_size
    assert not (cache / "sgpn.pth").exists()
    bundle.download_bundle(quiet=True)
    assert handler.requests[-1].get("Range") == f"bytes={kept}-"
    _assert_installed(cache, official_folder)


def test_damaged_download_is_deleted_and_installs_nothing(official_folder, cache, tmp_path, serve):
    payload = _zip(official_folder, tmp_path / "bundle.zip").read_bytes()
    serve(payload[: len(payload) // 2])
    with pytest.raises(WeightsError, match="sgpn_release_bundle is a damaged zip archive.*SGPN_WEIGHTS_SGPN"):
        resolve_weights("sgpn")
    _assert_nothing_installed(cache)
    assert not (cache / "downloads").exists()


def test_html_page_instead_of_the_bundle_is_explained(cache, serve):
    serve(b"<!DOCTYPE html><html><body>Google Drive - Quota exceeded</body></html>")
    with pytest.raises(BundleError, match="an HTML page"):
        bundle.download_bundle(quiet=True)
    _assert_nothing_installed(cache)


def test_network_down_fails_fast_with_one_message(cache, monkeypatch, capsys):
    import socket

    with socket.socket() as probe:                     # a port nobody listens on: connection refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(bundle.BUNDLE_URL_ENV, f"http://127.0.0.1:{port}/bundle")
    monkeypatch.setattr(weights, "_download_hub", lambda *a, **k: pytest.fail("no Hub repository is configured"))
    started = time.perf_counter()
    with pytest.raises(WeightsError) as error:
        resolve_weights("sgpn")
    assert time.perf_counter() - started < 2.0
    message = str(error.value)
    for needed in (bundle.OFFICIAL_BUNDLE_PAGE, "sgpn weights import", "SGPN_BUNDLE_URL", "SGPN_WEIGHTS_SGPN",
                   "SGPN_WEIGHTS_DIR"):
        assert needed in message
    assert "Hugging Face" not in message
    assert main(["weights", "download"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sgpn: cannot download the SGPN release bundle")
    _assert_nothing_installed(cache)


def test_gdown_is_asked_for_the_official_drive_file(cache, monkeypatch):
    import gdown

    asked = {}

    def fake_download(**kwargs):
        asked.update(kwargs)
        raise gdown.exceptions.FileURLRetrievalError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(gdown, "download", fake_download)
    with pytest.raises(BundleError, match="Too many users.*sgpn weights import"):
        bundle.download_bundle()
    assert asked["id"] == "14GsUEJHJxDpJSiZRFB0Eo9oGcshcI6a3" and asked["url"] is None and asked["resume"] is True


# ------------------------------------------------------------------------------- list, verify, export, Hub

def test_list_and_verify_show_origins_layouts_and_the_bfm(official_folder, cache, tmp_path, monkeypatch, capsys):
    install_bundle(official_folder)
    assert main(["weights", "list", "sgpn", "d3dfr"]) == 0
    out = capsys.readouterr().out
    assert f"{cache / 'sgpn.pth'}  (SGPN_WEIGHTS_DIR)" in out and f"{cache / 'BFM'}  (SGPN_WEIGHTS_DIR (release bundle))" in out
    assert "release bundle installed from" in out
    assert main(["weights", "verify", "sgpn", "d3dfr"]) == 0
    assert "layout OK" in capsys.readouterr().out
    monkeypatch.setenv("SGPN_WEIGHTS_SGPN", str(cache / "d3dfr_finetune_ours.pth"))
    assert main(["weights", "verify", "sgpn"]) == 1
    assert "D3DFR face reconstruction network" in capsys.readouterr().err


def _hub_cache(root: Path, repo: str, files: dict[str, Path]) -> None:
    """Lay out a Hugging Face Hub cache holding ``files`` of ``repo`` at revision main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    for name, source in files.items():
        blob = repo_dir / "blobs" / _sha(source)
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, blob)
        snapshot = repo_dir / "snapshots" / commit / name
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)


HUB_SCRIPT = """
import json
from sgpn_arch.zoo.weights import resolve_weights
print(json.dumps([str(resolve_weights(n, allow_download=False)) for n in ("sgpn", "d3dfr")]))
"""


def test_export_for_a_hub_mirror_then_serve_it_from_the_hub_cache_offline(official_folder, cache, tmp_path):
    from safetensors.torch import load_file

    install_bundle(official_folder)
    mirror = tmp_path / "mirror"
    assert main(["weights", "export", "--safetensors", str(mirror)]) == 0
    card = (mirror / "README.md").read_text()
    exported = {p.name: p for p in mirror.glob("*.safetensors")}
    assert sorted(exported) == ["d3dfr_finetune_ours.safetensors", "sgpn.safetensors"]
    assert "academic research only" in card and bundle.OFFICIAL_BUNDLE_PAGE in card and "BFM" in card
    for path in exported.values():
        assert _sha(path) in card
        assert oct(path.stat().st_mode & 0o777) == "0o644"
    original = torch.load(cache / "sgpn.pth", weights_only=True)
    assert all(torch.equal(original[k], v) for k, v in load_file(exported["sgpn.safetensors"]).items())
    assert not (mirror / "BFM").exists()

    _hub_cache(tmp_path / "hub", "someone/sgpn-mirror", exported)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), SGPN_HF_REPO="someone/sgpn-mirror",
               SGPN_WEIGHTS_DIR=str(tmp_path / "empty"))
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True, text=True, check=True,
                          cwd=REPO_ROOT)
    paths = [Path(p) for p in __import__("json").loads(done.stdout.strip().splitlines()[-1])]
    assert [p.name for p in paths] == ["sgpn.safetensors", "d3dfr_finetune_ours.safetensors"]
    assert all(str(tmp_path / "hub") in str(p) for p in paths)


def test_export_refuses_a_wrong_file(official_folder, cache, tmp_path, monkeypatch, capsys):
    install_bundle(official_folder)
    monkeypatch.setenv("SGPN_WEIGHTS_SGPN", str(cache / "d3dfr_finetune_ours.pth"))
    assert main(["weights", "export", "--safetensors", str(tmp_path / "mirror")]) == 2
    assert "not the SGPN generator (official release): nothing exported" in capsys.readouterr().err
    assert not list(tmp_path.glob("mirror/*.safetensors"))


def test_bfm_folder_order(official_folder, cache, tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="sgpn weights download"):
        resolve_bfm_folder()
    install_bundle(official_folder)
    assert resolve_bfm_folder() == cache / "BFM"
    monkeypatch.setenv(weights.BFM_ENV, str(tmp_path / "mine"))
    assert resolve_bfm_folder() == tmp_path / "mine"
    assert resolve_bfm_folder(tmp_path / "given") == tmp_path / "given"


def test_import_of_a_missing_path_is_one_line(cache, tmp_path, capsys):
    assert main(["weights", "import", str(tmp_path / "nowhere.zip")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere.zip does not exist" in err[0]



MIRROR_DOWN_SCRIPT = """
import time
from sgpn_arch.zoo.weights import WeightsError, resolve_weights
started = time.perf_counter()
try:
    resolve_weights("sgpn")
except WeightsError as error:
    print(round(time.perf_counter() - started, 2))
    print(error)
"""


def test_unreachable_hub_mirror_fails_fast_and_names_the_cause(cache, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{port}", SGPN_HF_REPO="someone/sgpn-mirror",
               SGPN_BUNDLE_URL=f"http://127.0.0.1:{port}/bundle", HF_HUB_CACHE=str(tmp_path / "hub"))
    done = subprocess.run([sys.executable, "-c", MIRROR_DOWN_SCRIPT], env=env, capture_output=True, text=True,
                          check=True, cwd=REPO_ROOT)
    seconds, message = done.stdout.strip().split("\n", 1)
    assert float(seconds) < 3.0          # huggingface_hub alone retries a refused host for ~25 s
    assert "Hugging Face Hub someone/sgpn-mirror/sgpn.safetensors: ConnectionRefusedError" in message
    assert "LocalEntryNotFoundError" not in message
