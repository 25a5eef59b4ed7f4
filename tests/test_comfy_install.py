"""A ComfyUI-Manager style install: the repository in ``custom_nodes/<name>/``, ``requirements.txt``, nothing else.

The repository's files (``git ls-files``: what a clone holds) are copied into ``custom_nodes/sgpn-restore/`` of
a stub ComfyUI layout (``folder_paths``, ``comfy.model_management`` and ``comfy.utils`` written here), and a
separate Python imports the pack the way ComfyUI's ``load_custom_node`` does: an importlib spec from the
folder's ``__init__.py`` under a module name with a dash (the folder name in older ComfyUI, the folder's path
with dots replaced by ``_x_`` in current ComfyUI). That Python starts with ``-I -S`` and gets only the
site-packages folders back, without their ``.pth`` files: the editable finder ``pip install -e .`` installed
for ``sgpn_arch`` is not there, and neither is this checkout. One run also has another pack's ``sgpn_arch``
and ``basicsr`` already imported. Each run loads the models through the loader's default choices (the
official bundle installed by ``sgpn weights download``/``import`` into ``SGPN_WEIGHTS_DIR``, generated tiny
weights and the synthetic BFM) and restores a real photo, with the network switched off.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_FOLDER = "sgpn-restore"    # a Manager clone is named after the repository: a dash, not an identifier
PHOTO = "real_lq_whole/sgpn_0022.jpg"
DETECTOR_FILE = "detection_mobilenet0.25_Final.pth"
COMFYUI_OWN = {"torch", "torchvision"}   # come with ComfyUI; a pack must never list (and so replace) them

FOLDER_PATHS_STUB = Path(__file__).with_name("comfy_stubs") / "folder_paths.py"   # shared with test_comfy_nodes

MODEL_MANAGEMENT_STUB = '''"""comfy.model_management, reduced to what custom nodes call."""
import torch


class InterruptProcessingException(Exception):
    pass


def get_torch_device():
    return torch.device("cpu")


def unet_offload_device():
    return torch.device("cpu")


def free_memory(memory_required, device, keep_loaded=[]):
    pass


def soft_empty_cache(force=False):
    pass


def throw_exception_if_processing_interrupted():
    pass
'''

UTILS_STUB = '''"""comfy.utils, reduced to what custom nodes call."""


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total, self.current = total, 0

    def update(self, value):
        self.current += value
'''

# Runs in the fresh interpreter: argv = comfy_root, module naming ("path" | "folder"), foreign pack folder or "",
# photo, JSON list of site-packages folders, repository root (must stay unused).
RUN_PACK = r'''
import importlib.util, json, os, socket, sys
comfy_root, naming, foreign, photo, site_dirs, repo_root = sys.argv[1:7]


def refuse(*args, **kwargs):
    raise OSError("network access from the node pack")


socket.socket.connect = refuse
socket.create_connection = refuse
sys.path.insert(0, comfy_root)                      # ComfyUI runs main.py from its folder
sys.path.extend(json.loads(site_dirs))              # no .pth files: no editable finder
assert not any(p.rstrip("/") == repo_root for p in sys.path)
assert importlib.util.find_spec("sgpn_arch") is None, "sgpn_arch importable without the pack"
if foreign:                                          # another pack already imported its own modules
    sys.path.insert(1, foreign)
    import sgpn_arch, basicsr                        # noqa: E401
foreign_modules = {name: sys.modules.get(name) for name in ("sgpn_arch", "basicsr")}

import folder_paths
folder_paths.add_model_folder_path("sgpn", os.path.join(comfy_root, "extra", "sgpn"))   # extra_model_paths.yaml

module_path = os.path.join(comfy_root, "custom_nodes", "sgpn-restore")
name = module_path.replace(".", "_x_") if naming == "path" else os.path.basename(module_path)
spec = importlib.util.spec_from_file_location(name, os.path.join(module_path, "__init__.py"))
pack = importlib.util.module_from_spec(spec)
sys.modules[name] = pack
spec.loader.exec_module(pack)

import numpy as np, torch
from PIL import Image
loader = pack.NODE_CLASS_MAPPINGS["SGPN_ModelLoader"]
required = loader.INPUT_TYPES()["required"]
defaults = {key: spec[0][0] for key, spec in required.items() if isinstance(spec[0], list)}
defaults.update(detector="retinaface_mobile0.25", device="auto")
sgpn_model, facerestore_model = getattr(loader(), loader.FUNCTION)(**defaults)
restore = pack.NODE_CLASS_MAPPINGS["SGPN_RestoreFaces"]
image = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB"), np.float32) / 255)[None]
out, mask, faces = getattr(restore(), restore.FUNCTION)(sgpn_model=sgpn_model, image=image, upscale=1,
    only_center_face=False, paste_back=True, visibility=1.0, det_threshold=0.9)
crops = pack.NODE_CLASS_MAPPINGS["SGPN_FaceCrops"]().crops(faces)

pack_files = sorted({mod.__file__ for m, mod in list(sys.modules.items())
                     if m.startswith(name + ".") and getattr(mod, "__file__", None)})
print("RESULT " + json.dumps({
    "nodes": sorted(pack.NODE_CLASS_MAPPINGS),
    "choices": {key: required[key][0] for key in ("generator", "d3dfr", "bfm")},
    "sgpn_folders": folder_paths.get_folder_paths("sgpn"),
    "image": list(out.shape), "mask_max": float(mask.max()), "faces": len(faces.restored),
    "crops": [list(c.shape) for c in crops],
    "private_package": [m for m in sys.modules if m.endswith(".sgpn_arch")],
    "foreign_untouched": all(sys.modules.get(k) is v for k, v in foreign_modules.items()),
    "basicsr_imported": "basicsr" in sys.modules and not foreign,
    "files_from_checkout": sorted(m for m, mod in list(sys.modules.items())
                                  if (getattr(mod, "__file__", None) or "").startswith(repo_root + os.sep)),
    "pack_files": pack_files,
    "loaded": sorted({m.split(".")[0] for m in list(sys.modules)}),
}))
'''


def repository_files() -> list[Path]:
    """What a clone of this checkout holds: tracked files plus new files not ignored (committed with them)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [Path(name) for name in listed if name and (REPO_ROOT / name).is_file()]


def site_folders() -> list[str]:
    """site-packages folders of this Python, without processing their .pth files."""
    folders = set(site.getsitepackages()) | {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(f for f in folders if Path(f).is_dir())


@pytest.fixture(scope="module")
def comfy_root(module_mktemp) -> Path:
    """A stub ComfyUI folder with the repository copied into custom_nodes/ (no models folders yet)."""
    root = module_mktemp("ComfyUI")
    shutil.copy(FOLDER_PATHS_STUB, root / "folder_paths.py")
    (root / "comfy").mkdir()
    (root / "comfy" / "__init__.py").write_text("")
    (root / "comfy" / "model_management.py").write_text(MODEL_MANAGEMENT_STUB)
    (root / "comfy" / "utils.py").write_text(UTILS_STUB)
    pack = root / "custom_nodes" / PACK_FOLDER
    for relative in repository_files():
        (pack / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, pack / relative)
    return root


@pytest.fixture(scope="module")
def bundle(module_mktemp, tiny_weights, bfm_dir) -> Path:
    """weights_dir() after `sgpn weights download`: sgpn.pth, d3dfr_finetune_ours.pth and BFM/."""
    folder = module_mktemp("sgpn_cache")
    shutil.copy(tiny_weights["sgpn"], folder / "sgpn.pth")
    shutil.copy(tiny_weights["d3dfr"], folder / "d3dfr_finetune_ours.pth")
    shutil.copytree(bfm_dir, folder / "BFM")
    return folder


@pytest.fixture(scope="module")
def foreign_pack(module_mktemp) -> Path:
    """Another pack's own ``sgpn_arch`` and ``basicsr``: importing any of their modules by mistake fails."""
    folder = module_mktemp("other_pack")
    for package in ("sgpn_arch", "basicsr"):
        (folder / package).mkdir()
        (folder / package / "__init__.py").write_text("OTHER_PACK = True\n")
        for module in ("restorer", "model", "weights", "checkpoints"):
            (folder / package / f"{module}.py").write_text(f"raise ImportError('the other pack\\'s {package}')\n")
    return folder


def run_pack(comfy_root: Path, bundle: Path, naming: str, foreign: Path | None, faces_dir: Path,
             home: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SGPN_WEIGHTS_DIR": str(bundle), "OMP_NUM_THREADS": "2",
           "SGPN_COMPILE": "0"}   # compiling takes a minute on CPU: not what this test checks
    command = [sys.executable, "-I", "-S", "-c", RUN_PACK, str(comfy_root), naming, str(foreign or ""),
               str(faces_dir / PHOTO), json.dumps(site_folders()), str(REPO_ROOT)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.slow
@pytest.mark.parametrize("naming, with_foreign", [("path", False), ("folder", True)])
def test_manager_clone_is_a_working_install(comfy_root, bundle, foreign_pack, faces_dir, tmp_path, retinaface_dir,
                                            naming, with_foreign):
    detection = comfy_root / "models" / "facedetection"
    detection.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(retinaface_dir) / DETECTOR_FILE, detection / DETECTOR_FILE)
    result = run_pack(comfy_root, bundle, naming, foreign_pack if with_foreign else None, faces_dir, tmp_path)

    assert result["nodes"] == ["SGPN_FaceCrops", "SGPN_ModelLoader", "SGPN_RestoreFaces"]
    # the official bundle is used where `sgpn weights download` put it, and the defaults are the right files
    assert result["choices"] == {"generator": ["sgpn.pth"], "d3dfr": ["d3dfr_finetune_ours.pth"],
                                 "bfm": [str(Path("BFM") / "BFM09_model_info.mat")]}
    models = comfy_root / "models"
    assert result["sgpn_folders"] == [str(comfy_root / "extra" / "sgpn"), str(models / "sgpn"), str(bundle)]
    assert (models / "sgpn").is_dir() and detection.is_dir()   # created for the user to fill
    # a face was found and restored
    assert result["image"][0] == 1 and result["image"][-1] == 3 and result["mask_max"] > 0.5 and result["faces"] == 1
    assert result["crops"] == [[1, 512, 512, 3]] * 3
    # its own sgpn_arch, privately named; nothing from this checkout, the other pack's modules left as they were
    assert len(result["private_package"]) == 1 and PACK_FOLDER in result["private_package"][0]
    assert result["files_from_checkout"] == []
    assert result["foreign_untouched"] and not result["basicsr_imported"]
    assert not (bundle / DETECTOR_FILE).exists()

    # every library the pack's code imported (optional ones it did not need stay out) is ComfyUI's own or
    # installed by requirements.txt, directly or as a dependency
    provided = _closure(set(_requirement_names()) | COMFYUI_OWN)
    distributions = importlib.metadata.packages_distributions()
    used = _imported_libraries(result["pack_files"]) & set(result["loaded"])
    assert {"torch", "numpy", "cv2", "facexlib", "scipy"} <= used
    missing = {module for module in used if not {_normalise(d) for d in distributions.get(module, [])} & provided}
    assert missing == set(), f"imported by the pack but not installed by requirements.txt: {missing}"


def test_requirements_never_touch_the_host_torch():
    """requirements.txt is what the Manager pip-installs into ComfyUI's Python."""
    names = _requirement_names()
    assert not names & COMFYUI_OWN and "basicsr" not in names and "opencv-python-headless" not in names
    assert "facexlib" in names
    for line in _requirement_lines():
        assert "==" not in line and "<" not in line, f"exact pins and caps fight other packs: {line}"


def test_registry_metadata():
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    comfy = project["tool"]["comfy"]
    assert {"PublisherId", "DisplayName", "Icon", "requires-comfyui"} <= set(comfy)
    assert comfy["Icon"].endswith("/docs/icon.png") and (REPO_ROOT / "docs" / "icon.png").is_file()
    from PIL import Image

    with Image.open(REPO_ROOT / "docs" / "icon.png") as icon:
        assert icon.format == "PNG" and icon.size[0] == icon.size[1] <= 400
    assert project["project"]["urls"]["Repository"].startswith("https://")
    # the host's torch is never replaced by an install of the package either
    for dependency in project["project"]["dependencies"]:
        if re.match(r"torch(vision)?\b", dependency):
            assert "<" not in dependency, dependency
    # generic top-level names are not installed into the host Python by the distribution
    assert "comfy_nodes*" not in project["tool"]["setuptools"]["packages"]["find"]["include"]
    workflows = sorted((REPO_ROOT / "example_workflows").glob("*.json"))
    assert workflows and not (REPO_ROOT / "comfy_nodes" / "workflows").exists()


def _imported_libraries(files: list[str]) -> set[str]:
    """Top-level names of the non-standard-library modules the given source files import (at any depth)."""
    names = set()
    for file in files:
        for node in ast.walk(ast.parse(Path(file).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in {"comfy", "folder_paths"}}


def _requirement_lines() -> list[str]:
    lines = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names() -> set[str]:
    return {_normalise(re.split(r"[<>=!~;\[ ]", line)[0]) for line in _requirement_lines()}


def _closure(names: set[str]) -> set[str]:
    """``names`` and everything they require (installed metadata, extras and markers for other systems skipped)."""
    seen, todo = set(), list(names)
    while todo:
        name = _normalise(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" not in requirement:
                todo.append(re.split(r"[<>=!~;\[ (]", requirement)[0])
    return seen
