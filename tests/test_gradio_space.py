"""The Hugging Face Space folder built by gradio_app/build_space.py from this checkout: what it holds, what it
installs, and that it runs the packages copied into it (the running app is tested in test_gradio_browser.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import gradio
import pytest
import yaml

from gradio_app.build_space import CPU_WHEELS, build_space, main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _front_matter(readme: Path) -> dict:
    _, header, _ = readme.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(header)


def test_space_folder_holds_this_checkout_and_its_requirements(tmp_path):
    space = build_space(tmp_path / "space")
    assert {path.name for path in space.iterdir()} == {"app.py", "README.md", "requirements.txt", "packages.txt",
                                                       "sgpn_arch", "gradio_app"}
    for package in ("sgpn_arch", "gradio_app"):
        for source in (REPO_ROOT / package).rglob("*.py"):   # sub-packages too
            if source.name != "build_space.py":
                assert (space / source.relative_to(REPO_ROOT)).read_bytes() == source.read_bytes(), source
    assert not [path for path in space.rglob("*") if path.suffix in (".pth", ".safetensors", ".mat", ".pyc")]

    card = _front_matter(space / "README.md")
    assert (card["sdk"], card["app_file"], card["sdk_version"]) == ("gradio", "app.py", gradio.__version__)
    assert {"title", "emoji", "license", "python_version"} <= set(card)

    requirements = (space / "requirements.txt").read_text().splitlines()
    assert f"--extra-index-url {CPU_WHEELS}" in requirements
    assert not [line for line in requirements if "git+" in line or "://" in line and not line.startswith("--")]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert set(pyproject["project"]["dependencies"]) <= set(requirements)
    assert not [line for line in requirements if line.split(">")[0].split("=")[0] in ("gradio", "gradio_client")]
    assert (space / "packages.txt").read_text().split() == ["libgl1", "libglib2.0-0"]


def test_build_space_command_gpu_and_existing_folder(tmp_path, capsys):
    assert main([str(tmp_path / "gpu"), "--gpu"]) == 0
    assert "--extra-index-url" not in (tmp_path / "gpu" / "requirements.txt").read_text()
    assert main([str(tmp_path / "gpu")]) == 1 and "--force" in capsys.readouterr().err
    assert main([str(tmp_path / "gpu"), "--force"]) == 0
    assert f"--extra-index-url {CPU_WHEELS}" in (tmp_path / "gpu" / "requirements.txt").read_text()


@pytest.mark.slow
def test_built_space_imports_its_own_copy(tmp_path):
    space = build_space(tmp_path / "space")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", "import gradio_app, sgpn_arch; print(gradio_app.__file__); "
                           "print(sgpn_arch.__file__)"], cwd=space, env=env, capture_output=True, text=True, check=True)
    assert [Path(line).parent.parent for line in done.stdout.split()] == [space, space]
