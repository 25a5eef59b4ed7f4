"""Weights zoo: resolution order, URL download with sha256 check, Hugging Face Hub cache, offline errors."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sgpn_arch.zoo import weights
from sgpn_arch.zoo.weights import MODEL_ZOO, WeightSpec, WeightsError, register_weight, resolve_weights

PAYLOAD = b"pretend checkpoint bytes " * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture()
def zoo_entry(monkeypatch, tmp_path):
    """Register a test weight (removed afterwards) and point the cache folder at ``tmp_path/cache``."""
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(tmp_path / "cache"))
    added = []

    def add(**fields) -> WeightSpec:
        spec = register_weight(WeightSpec(name="test_net", filename="test_net.pth", description="test network",
                                          **fields))
        added.append(spec.name)
        return spec

    yield add
    for name in added:
        MODEL_ZOO.pop(name, None)


@pytest.fixture()
def http_root(tmp_path):
    """A local HTTP server (127.0.0.1) serving ``tmp_path/www``; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "net.pth").write_bytes(PAYLOAD)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_explicit_path_and_environment_override(zoo_entry, tmp_path, monkeypatch):
    spec = zoo_entry()
    given = tmp_path / "mine.pth"
    given.write_bytes(PAYLOAD)
    assert resolve_weights("test_net", given) == given
    monkeypatch.setenv(spec.env_var, str(given))
    assert spec.env_var == "SGPN_WEIGHTS_TEST_NET"
    assert resolve_weights("test_net") == given
    monkeypatch.setenv(spec.env_var, str(tmp_path / "gone.pth"))
    with pytest.raises(WeightsError, match="SGPN_WEIGHTS_TEST_NET.*gone.pth"):
        resolve_weights("test_net")
    with pytest.raises(WeightsError, match="unknown weights"):
        resolve_weights("no_such_net")


def test_url_download_is_verified_and_cached(zoo_entry, http_root, tmp_path):
    root, base = http_root
    zoo_entry(sha256=PAYLOAD_SHA, url=f"{base}/net.pth")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "test_net.pth.part").write_bytes(b"stale half download")  # the server ignores Range: rewritten
    path = resolve_weights("test_net")
    assert path == cache / "test_net.pth" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["test_net.pth"]
    (root / "net.pth").unlink()
    assert resolve_weights("test_net") == path  # cached: no second download


def test_url_download_with_wrong_sha256_is_refused_and_deleted(zoo_entry, http_root, tmp_path):
    root, base = http_root
    (root / "net.pth").write_bytes(PAYLOAD + b"tampered")
    zoo_entry(sha256=PAYLOAD_SHA, url=f"{base}/net.pth")
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights("test_net")
    assert not any((tmp_path / "cache").iterdir())


def test_cached_file_with_wrong_sha256_is_refused(zoo_entry, tmp_path):
    zoo_entry(sha256=PAYLOAD_SHA)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "test_net.pth").write_bytes(b"something else")
    with pytest.raises(WeightsError, match="Delete it and download it again"):
        resolve_weights("test_net", allow_download=False)


def test_offline_error_names_the_file_and_how_to_provide_it(zoo_entry, http_root):
    _, base = http_root
    zoo_entry(url=f"{base}/missing.pth")
    with pytest.raises(WeightsError) as error:
        resolve_weights("test_net")
    message = str(error.value)
    assert "test_net.pth" in message and "SGPN_WEIGHTS_TEST_NET" in message and "404" in message
    with pytest.raises(WeightsError, match="downloads disabled"):
        resolve_weights("test_net", allow_download=False)


def _hub_cache(root: Path, repo: str, filename: str, payload: bytes) -> None:
    """Lay out a Hugging Face Hub cache holding ``filename`` of ``repo`` at revision main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    blob = repo_dir / "blobs" / hashlib.sha256(payload).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(payload)
    snapshot = repo_dir / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


HUB_SCRIPT = """
import json, sys
from sgpn_arch.zoo.weights import WeightSpec, WeightsError, register_weight, resolve_weights
register_weight(WeightSpec("test_net", "test_net.pth", "test network", sha256=sys.argv[1], hf_filename="test_net.pth"))
try:
    print(json.dumps({"path": str(resolve_weights("test_net"))}))
except WeightsError as error:
    print(json.dumps({"error": str(error)}))
"""


def _resolve_in_subprocess(tmp_path: Path, sha256: str, repo: str) -> dict:
    """huggingface_hub reads HF_HUB_* at import: resolve in a fresh interpreter with an offline hub."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), SGPN_HF_REPO=repo,
               SGPN_WEIGHTS_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT, sha256], env=env, capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hub_download_from_local_cache_and_sha256_mismatch(tmp_path):
    _hub_cache(tmp_path / "hub", "lab/sgpn-test", "test_net.pth", PAYLOAD)
    found = _resolve_in_subprocess(tmp_path, PAYLOAD_SHA, "lab/sgpn-test")
    assert Path(found["path"]).read_bytes() == PAYLOAD and str(tmp_path / "hub") in found["path"]

    refused = _resolve_in_subprocess(tmp_path, "0" * 64, "lab/sgpn-test")
    assert "sha256" in refused["error"] and "expected " + "0" * 64 in refused["error"]

    missing = _resolve_in_subprocess(tmp_path, PAYLOAD_SHA, "lab/other-repo")
    assert "lab/other-repo/test_net.pth" in missing["error"] and "SGPN_WEIGHTS_TEST_NET" in missing["error"]


def test_bfm_folder_comes_from_option_or_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(weights.BFM_ENV, raising=False)
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(tmp_path / "empty_cache"))
    with pytest.raises(WeightsError, match="BFM"):
        weights.resolve_bfm_folder()
    monkeypatch.setenv(weights.BFM_ENV, str(tmp_path))
    assert weights.resolve_bfm_folder() == tmp_path
    assert weights.resolve_bfm_folder(tmp_path / "x") == tmp_path / "x"


def test_facexlib_never_downloads_what_the_zoo_resolved(retinaface_dir, monkeypatch):
    monkeypatch.setenv("SGPN_WEIGHTS_RETINAFACE_MOBILE025", str(retinaface_dir / "detection_mobilenet0.25_Final.pth"))
    root = weights.stage_for_facexlib("retinaface_mobile0.25", allow_download=False)
    assert (root / "detection_mobilenet0.25_Final.pth").is_file()
