"""The sub-package layout of ``sgpn_arch`` and the flat module names of earlier versions, which still import."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import sgpn_arch

REPO_ROOT = Path(__file__).resolve().parents[1]

# every flat module (and the metrics sub-package) of earlier versions -> its sub-package now
OLD_NAMES = {
    "nets": ["arcface", "d3dfr", "decoder_init", "discriminator", "generator", "gpen", "model", "stylegan2_ops"],
    "face3d": ["bfm", "bfm_synthetic", "renderer", "shape_prior"],
    "pipeline": ["align", "bg_upsampler", "compilation", "cpu_memory", "examples", "image_io", "official_pipeline",
                 "output_folder", "restorer"],
    "zoo": ["bundle", "checkpoint_layouts", "checkpoints", "hub_mirror", "weights", "weights_cli"],
    "eval": ["bench", "degradation", "peers", "metrics", "metrics.fid", "metrics.identity", "metrics.landmarks",
             "metrics.niqe", "metrics.perceptual", "metrics.psnr_ssim"],
}
MOVES = [(old, sub) for sub, olds in OLD_NAMES.items() for old in olds]


def test_layout_is_five_documented_subpackages_and_the_command():
    package = Path(sgpn_arch.__file__).parent
    assert sorted(p.name for p in package.glob("*.py")) == ["__init__.py", "cli.py"]
    assert sorted(p.parent.name for p in package.glob("*/__init__.py")) == sorted(OLD_NAMES)
    for sub in OLD_NAMES:
        doc = importlib.import_module(f"sgpn_arch.{sub}").__doc__
        assert doc and "\n" not in doc.strip(), sub
    assert {old.split(".")[0] for old, _ in MOVES} == set(sgpn_arch.MOVED)


@pytest.mark.parametrize("old, sub", MOVES)
def test_old_name_is_the_moved_module(old, sub):
    new = importlib.import_module(f"sgpn_arch.{sub}.{old}")
    assert importlib.import_module(f"sgpn_arch.{old}") is new
    assert sys.modules[f"sgpn_arch.{old}"] is new and new.__name__ == f"sgpn_arch.{sub}.{old}"
    assert new.__spec__.name == new.__name__   # the alias leaves the module's own spec alone
    parent, _, leaf = f"sgpn_arch.{old}".rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is new   # `from sgpn_arch import weights`


FRESH_PROCESS = """
import sys
from sgpn_arch.restorer import FaceRestorer
import sgpn_arch.metrics.fid, sgpn_arch.model
from sgpn_arch import weights
import sgpn_arch.pipeline.restorer as restorer
assert FaceRestorer is restorer.FaceRestorer and sgpn_arch.model is sys.modules["sgpn_arch.nets.model"]
assert weights is sys.modules["sgpn_arch.zoo.weights"]
assert sgpn_arch.metrics.fid is sys.modules["sgpn_arch.eval.metrics.fid"]
files = {}
for module in list(sys.modules.values()):
    if (getattr(module, "__name__", "") + ".").startswith("sgpn_arch."):
        files.setdefault(module.__file__, set()).add(id(module))
assert all(len(ids) == 1 for ids in files.values()), "a module was executed twice"
print(restorer.__file__)
"""


def test_old_names_import_in_a_fresh_process():
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip()) == REPO_ROOT / "sgpn_arch" / "pipeline" / "restorer.py"


# the ComfyUI pack's way: the folder loaded as <pack>.sgpn_arch, old names relative to that name
PRIVATE_NAME = """
import importlib.util, sys, types
spec = importlib.util.spec_from_file_location("layout_loader", sys.argv[1])   # the pack's loader, without the pack
loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader)
sys.modules["layout_pack"] = types.ModuleType("layout_pack")
loader.load_private("layout_pack", sys.argv[1])
old = importlib.import_module("layout_pack.sgpn_arch.restorer")
assert old is importlib.import_module("layout_pack.sgpn_arch.pipeline.restorer")
assert importlib.import_module("layout_pack.sgpn_arch.metrics.fid").__name__ == "layout_pack.sgpn_arch.eval.metrics.fid"
assert not [name for name in sys.modules if name.split(".")[0] == "sgpn_arch"], "the plain sgpn_arch was imported"
"""


def test_old_names_under_the_comfyui_private_name():
    loader = REPO_ROOT / "comfy_nodes" / "sgpn_package.py"
    done = subprocess.run([sys.executable, "-c", PRIVATE_NAME, str(loader)], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
