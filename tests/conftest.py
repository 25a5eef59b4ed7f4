"""Shared fixtures: paths to the shared test data, a synthetic BFM, generated weights, detector weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(min(2, os.cpu_count() or 1))
# eager by default in tests: compiling each test's network would cost minutes (the compiled default path has its own tests)
os.environ.setdefault("SGPN_COMPILE", "0")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("SGPN_SHARED_DIR", REPO_ROOT.parent / "shared"))
    if not (path / "data" / "faces").is_dir():
        pytest.fail(f"shared test data not found at {path}; set SGPN_SHARED_DIR")
    return path


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "faces"


@pytest.fixture(scope="module")
def module_mktemp(tmp_path_factory, request):
    """``tmp_path_factory.mktemp`` for module-scoped fixtures, whose folders go when the module's tests are done.

    Generated weights run to hundreds of MB per module and CI disks can be small; the folders are kept when a
    test of the module failed, like ``tmp_path`` under ``tmp_path_retention_policy = "failed"``.
    """
    failed_before = request.session.testsfailed
    made: list[Path] = []

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failed_before:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def bfm_dir(tmp_path_factory) -> Path:
    from sgpn_arch.face3d.bfm_synthetic import write_synthetic_bfm

    folder = tmp_path_factory.mktemp("bfm")
    write_synthetic_bfm(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict[str, Path]:
    from sgpn_arch.zoo.checkpoints import write_random_checkpoints

    return write_random_checkpoints(tmp_path_factory.mktemp("weights_tiny"), preset="tiny")


@pytest.fixture(scope="session")
def official_weights(tmp_path_factory) -> dict[str, Path]:
    from sgpn_arch.zoo.checkpoints import write_random_checkpoints

    return write_random_checkpoints(tmp_path_factory.mktemp("weights_official"), preset="official")


@pytest.fixture(scope="session")
def retinaface_dir(shared_dir: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("facexlib_weights")
    name = "detection_mobilenet0.25_Final.pth"
    shutil.copy(shared_dir / "weights" / "retinaface" / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_sgpn(tiny_weights, bfm_dir):
    from sgpn_arch.nets.model import build_sgpn

    return build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir, device="cpu", renderer_backend="torch")
