"""The ComfyUI node pack, imported and executed the way ComfyUI does it.

ComfyUI itself is not a pip-installable library, so minimal stand-ins for the three ComfyUI modules
the pack uses (``folder_paths``, ``comfy.model_management``, ``comfy.utils``) are injected into
``sys.modules``; they behave like ComfyUI's own for the functions the pack calls. The pack is then
loaded from a ``custom_nodes`` folder through importlib, as ComfyUI's ``load_custom_node`` does.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import shutil
import socket
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_DIR = REPO_ROOT / "comfy_nodes"
PACK_NAME = "ComfyUI-SGPN"  # the folder name a user would clone/link the pack under
WORKFLOW_API = REPO_ROOT / "example_workflows" / "sgpn_restore_api.json"
WORKFLOW_UI = REPO_ROOT / "example_workflows" / "sgpn_restore_ui.json"
PHOTO = "real_lq_whole/sgpn_0022.jpg"          # one face, 355x505
SECOND_PHOTO = "real_lq_whole/sgpn_0026.jpg"   # another person, 400x600
TEST_DETECTOR = "retinaface_mobile0.25"        # the detector whose real weights are available offline
WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING"}


# --------------------------------------------------------------------------------------------
# ComfyUI stand-ins


def make_folder_paths(base: Path) -> types.ModuleType:
    """``folder_paths`` with ComfyUI's registry semantics (lists of folders + extension sets), rooted at ``base``:
    the stand-in module the Manager-install test writes into its ComfyUI folder, loaded from there."""
    shutil.copy(Path(__file__).with_name("comfy_stubs") / "folder_paths.py", base / "folder_paths.py")
    spec = importlib.util.spec_from_file_location("folder_paths", base / "folder_paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class InterruptProcessingException(Exception):
    pass


def make_comfy() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """``comfy``, ``comfy.model_management`` and ``comfy.utils`` recording what the pack asks of them."""
    comfy = types.ModuleType("comfy")
    comfy.__path__ = []
    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = InterruptProcessingException
    mm.calls = []
    mm.interrupt_processing = False
    mm.lock = threading.RLock()
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.free_memory = lambda memory_required, device, keep_loaded=[]: mm.calls.append(("free_memory", memory_required, device))
    mm.soft_empty_cache = lambda force=False: mm.calls.append(("soft_empty_cache",))

    def throw_exception_if_processing_interrupted():
        with mm.lock:
            mm.calls.append(("interrupt_check",))
            if mm.interrupt_processing:
                mm.interrupt_processing = False
                raise InterruptProcessingException()

    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted

    utils = types.ModuleType("comfy.utils")
    utils.bars = []

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.current = total, 0
            utils.bars.append(self)

        def update_absolute(self, value, total=None, preview=None):
            if total is not None:
                self.total = total
            self.current = min(value, self.total)

        def update(self, value):
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar
    comfy.model_management, comfy.utils = mm, utils
    return comfy, mm, utils


def load_custom_node(custom_nodes: Path, name: str) -> types.ModuleType:
    """What ComfyUI's ``load_custom_node`` does for a package folder."""
    module_path = custom_nodes / name
    spec = importlib.util.spec_from_file_location(name, module_path / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_image(path: Path) -> torch.Tensor:
    """ComfyUI's LoadImage: EXIF-rotated RGB as float32 [1,H,W,3] in 0..1."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    return torch.from_numpy(np.array(image).astype(np.float32) / 255.0)[None]


# --------------------------------------------------------------------------------------------
# fixtures


FOREIGN_KEYS = ["conv_body_first.weight", "final_linear.weight", "stylegan_decoder.style_mlp.1.weight",
                "condition_scale.0.0.weight"]   # what checkpoint_layouts calls a GFPGAN v1.2-v1.4 generator


@pytest.fixture(scope="module")
def comfy_env(module_mktemp, tiny_weights, bfm_dir, retinaface_dir):
    """A ComfyUI-like install: models folders with the pack's files, stand-ins, the pack in custom_nodes."""
    base = module_mktemp("ComfyUI")
    models = base / "models"
    (models / "sgpn" / "BFM").mkdir(parents=True)
    (models / "facedetection").mkdir()
    shutil.copy(tiny_weights["sgpn"], models / "sgpn" / "sgpn.pth")
    shutil.copy(tiny_weights["d3dfr"], models / "sgpn" / "d3dfr_finetune_ours.pth")
    for item in Path(bfm_dir).iterdir():
        shutil.copy(item, models / "sgpn" / "BFM" / item.name)
    for item in Path(retinaface_dir).iterdir():
        shutil.copy(item, models / "facedetection" / item.name)
    # files the dropdowns must tell apart by their keys: another network, a damaged file, a safetensors D3DFR
    torch.save({key: torch.zeros(1) for key in FOREIGN_KEYS}, models / "sgpn" / "GFPGANv1.4.pth")
    (models / "sgpn" / "broken.pth").write_bytes(b"not a checkpoint")
    from safetensors.torch import save_file
    save_file(torch.load(tiny_weights["d3dfr"], weights_only=True), models / "sgpn" / "d3dfr_copy.safetensors")
    # another pack (or extra_model_paths.yaml) registered facerestore_models first, with a user folder
    user_folder = base / "shared_models" / "facerestore"
    user_folder.mkdir(parents=True)
    (user_folder / "GFPGANv1.4.pth").write_bytes(b"")

    custom_nodes = base / "custom_nodes"
    custom_nodes.mkdir()
    try:
        (custom_nodes / PACK_NAME).symlink_to(PACK_DIR, target_is_directory=True)
    except OSError:  # no symlinks (Windows without developer mode): copies, the sibling package beside the pack
        shutil.copytree(PACK_DIR, custom_nodes / PACK_NAME)
        shutil.copytree(REPO_ROOT / "sgpn_arch", custom_nodes / "sgpn_arch")

    folder_paths = make_folder_paths(base)
    folder_paths.folder_names_and_paths["facerestore_models"] = ([str(user_folder)], folder_paths.supported_pt_extensions)
    comfy, mm, utils = make_comfy()
    stand_ins = {"folder_paths": folder_paths, "comfy": comfy, "comfy.model_management": mm, "comfy.utils": utils}
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    bundle = base / "sgpn_cache"     # weights_dir(): where `sgpn weights download` would put the bundle
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SGPN_WEIGHTS_DIR", str(bundle))
        env.delenv("SGPN_BFM_DIR", raising=False)
        env.setenv("SGPN_COMPILE", "0")   # compiling takes a minute on CPU: not what these tests check
        try:
            pack = load_custom_node(custom_nodes, PACK_NAME)
            yield types.SimpleNamespace(pack=pack, folder_paths=folder_paths, mm=mm, utils=utils, base=base,
                                        user_folder=user_folder, custom_nodes=custom_nodes, bundle=bundle)
        finally:
            for name in [n for n in sys.modules if n == PACK_NAME or n.startswith(PACK_NAME + ".")]:
                del sys.modules[name]
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module


@pytest.fixture(scope="module")
def api_workflow() -> dict:
    return json.loads(WORKFLOW_API.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sgpn_model(comfy_env, api_workflow):
    """The loader node run with the example workflow's settings (test detector swapped in)."""
    inputs = dict(_node_of_type(api_workflow, "SGPN_ModelLoader")["inputs"], detector=TEST_DETECTOR)
    return _call_node(comfy_env.pack, "SGPN_ModelLoader", inputs)[0]


def _node_of_type(workflow: dict, class_type: str) -> dict:
    (node,) = [n for n in workflow.values() if n["class_type"] == class_type]
    return node


def _validate_inputs(node_class, inputs: dict) -> None:
    """The checks ComfyUI's ``validate_inputs`` makes on widget values."""
    declared = node_class.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in declared.get(section, {}).items():
            if name not in inputs:
                assert section == "optional", f"{node_class.__name__}: missing required input {name}"
                continue
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            value = inputs[name]
            if isinstance(kind, list):
                assert value in kind, f"{node_class.__name__}.{name}: {value!r} not in {kind}"
            elif kind in ("INT", "FLOAT"):
                assert options.get("min", -np.inf) <= value <= options.get("max", np.inf), (name, value)
            elif kind == "BOOLEAN":
                assert isinstance(value, bool), (name, value)


def _call_node(pack, class_type: str, inputs: dict):
    node_class = pack.NODE_CLASS_MAPPINGS[class_type]
    _validate_inputs(node_class, inputs)
    node = node_class()
    outputs = getattr(node, node_class.FUNCTION)(**inputs)
    assert isinstance(outputs, tuple) and len(outputs) == len(node_class.RETURN_TYPES)
    return outputs


def _core_nodes(images: dict[str, torch.Tensor], sink: list):
    """The ComfyUI core nodes the example workflow uses, with LoadImage reading from ``images``."""
    def load_image_node(image, upload="image"):
        tensor = images[image]
        return tensor, torch.zeros(tensor.shape[:3])

    def mask_to_image(mask):
        return (mask.reshape(-1, 1, *mask.shape[-2:]).movedim(1, -1).expand(-1, -1, -1, 3),)

    def save(images, filename_prefix="ComfyUI"):
        sink.append((filename_prefix, images))
        return ()

    return {"LoadImage": load_image_node, "MaskToImage": mask_to_image, "SaveImage": save,
            "PreviewImage": lambda images: save(images, "preview")}


def run_workflow(pack, workflow: dict, images: dict[str, torch.Tensor], overrides: dict | None = None):
    """Execute an API-format workflow in dependency order; returns every node's outputs and the saved images."""
    overrides = overrides or {}
    results, sink = {}, []
    core = _core_nodes(images, sink)

    def execute(node_id: str, visiting=()):
        if node_id in results:
            return results[node_id]
        assert node_id not in visiting, f"cycle through node {node_id}"
        node = workflow[node_id]
        inputs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                value = execute(value[0], visiting + (node_id,))[value[1]]
            inputs[name] = value
        inputs.update(overrides.get(node["class_type"], {}))
        if node["class_type"] in pack.NODE_CLASS_MAPPINGS:
            results[node_id] = _call_node(pack, node["class_type"], inputs)
        else:
            results[node_id] = core[node["class_type"]](**inputs)
        return results[node_id]

    for node_id in workflow:
        execute(node_id)
    return results, sink


def _record_moves(comfy_env, monkeypatch) -> list:
    """Record every ``FaceRestorer.to(device)`` call as ``(restorer, device)``."""
    moves = []
    restorer_class = comfy_env.pack.nodes.FaceRestorer
    original_to = restorer_class.to

    def to(self, device):
        moves.append((self, torch.device(device)))
        return original_to(self, device)

    monkeypatch.setattr(restorer_class, "to", to)
    return moves


def _far_from(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """Pixels at least ``margin`` px away from any non-zero pixel of ``mask`` [H,W]."""
    near = torch.nn.functional.max_pool2d((mask > 0).float()[None, None], 2 * margin + 1, 1, margin)[0, 0]
    return near == 0


# --------------------------------------------------------------------------------------------
# declarations and registration


def test_pack_imports_from_custom_nodes_and_declares_valid_nodes(comfy_env):
    pack = comfy_env.pack
    assert pack.__name__ == PACK_NAME and set(pack.__all__) == {"NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"}
    mappings = pack.NODE_CLASS_MAPPINGS
    assert set(mappings) == {"SGPN_ModelLoader", "SGPN_RestoreFaces", "SGPN_FaceCrops"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(mappings)
    for name, node_class in mappings.items():
        assert name.startswith("SGPN_") and node_class.__name__ == name
        declared = node_class.INPUT_TYPES()
        assert set(declared) <= {"required", "optional", "hidden"} and declared["required"]
        inputs = {**declared["required"], **declared.get("optional", {})}
        for input_name, spec in inputs.items():
            assert isinstance(spec, tuple) and 1 <= len(spec) <= 2, (name, input_name)
            kind = spec[0]
            options = spec[1] if len(spec) == 2 else {}
            assert isinstance(options, dict)
            if isinstance(kind, list):  # combo: every default must be one of the choices
                assert all(isinstance(choice, str) for choice in kind)
                assert "default" not in options or options["default"] in kind, (name, input_name)
            elif kind in ("INT", "FLOAT"):
                assert options["min"] <= options["default"] <= options["max"], (name, input_name)
            else:
                assert isinstance(kind, str) and kind.isupper(), (name, input_name)
        assert isinstance(node_class.RETURN_TYPES, tuple) and node_class.RETURN_TYPES
        assert len(node_class.RETURN_NAMES) == len(node_class.RETURN_TYPES)
        assert isinstance(node_class.CATEGORY, str) and node_class.CATEGORY
        function = getattr(node_class, node_class.FUNCTION)
        parameters = inspect.signature(function).parameters
        assert set(inputs) == set(parameters) - {"self"}, name
        for input_name in declared.get("optional", {}):
            assert parameters[input_name].default is not inspect.Parameter.empty
    # custom types flow from the node producing them to the nodes consuming them
    produced = {t for c in mappings.values() for t in c.RETURN_TYPES}
    consumed = {spec[0] for c in mappings.values() for spec in c.INPUT_TYPES()["required"].values()
                if isinstance(spec[0], str) and spec[0].startswith("SGPN_")}
    assert consumed == {"SGPN_MODEL", "SGPN_FACES"} and consumed <= produced


def test_model_folders_are_merged_not_overwritten(comfy_env):
    fp = comfy_env.folder_paths
    models = Path(fp.models_dir)
    # facerestore_models is left alone: ReActor/facerestore_cf list it and cannot load an SGPN generator
    assert fp.get_folder_paths("facerestore_models") == [str(comfy_env.user_folder)]
    # models/sgpn first, then the folder `sgpn weights download`/`import` installs the bundle into
    assert fp.get_folder_paths("sgpn") == [str(models / "sgpn"), str(comfy_env.bundle)]
    assert fp.get_folder_paths("facedetection") == [str(models / "facedetection")]
    assert fp.folder_names_and_paths["checkpoints"][1] is fp.supported_pt_extensions  # shared set untouched
    assert ".mat" not in fp.supported_pt_extensions
    # registering again (ComfyUI reloading the pack) adds nothing twice
    comfy_env.pack.model_paths.register_model_folders()
    assert fp.get_folder_paths("sgpn") == [str(models / "sgpn"), str(comfy_env.bundle)]


def test_dropdowns_list_each_file_where_its_layout_fits(comfy_env, monkeypatch):
    loader = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_ModelLoader"].INPUT_TYPES()["required"]
    # told by the keys: the GFPGAN file, the damaged file and the D3DFR files are not generators, and so on;
    # the official file name comes first, so a fresh loader defaults to a file that loads
    assert loader["generator"][0] == ["sgpn.pth"]
    assert loader["d3dfr"][0] == ["d3dfr_finetune_ours.pth", "d3dfr_copy.safetensors"]
    assert loader["bfm"][0] == [os.path.join("BFM", "BFM09_model_info.mat")]
    assert "retinaface_resnet50" in loader["detector"][0] and TEST_DETECTOR in loader["detector"][0]

    # listing again reads no file; a changed file is read again
    layouts = comfy_env.pack.weight_layouts
    reads = []
    original = layouts.state_dict_keys
    monkeypatch.setattr(layouts, "state_dict_keys", lambda path: reads.append(path) or original(path))
    comfy_env.pack.model_paths.generator_choices()
    assert reads == []
    foreign = Path(comfy_env.folder_paths.models_dir) / "sgpn" / "GFPGANv1.4.pth"
    os.utime(foreign, ns=(foreign.stat().st_atime_ns, foreign.stat().st_mtime_ns + 10**9))
    comfy_env.pack.model_paths.generator_choices()
    assert reads == [str(foreign)]


def test_empty_dropdowns_say_where_files_go(comfy_env, tmp_path, monkeypatch):
    fp = comfy_env.folder_paths
    monkeypatch.setitem(fp.folder_names_and_paths, "sgpn", ([str(tmp_path / "empty")], {".pth", ".mat"}))
    loader = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_ModelLoader"]
    choices = {name: spec[0] for name, spec in loader.INPUT_TYPES()["required"].items()}
    assert all(len(choices[name]) == 1 and choices[name][0].startswith("(no ") for name in ("generator", "d3dfr", "bfm"))
    assert str(tmp_path / "empty") in loader.INPUT_TYPES()["required"]["generator"][1]["tooltip"]
    with pytest.raises(comfy_env.pack.errors.SGPNNodeError) as caught:
        _call_node(comfy_env.pack, "SGPN_ModelLoader", dict(
            generator=choices["generator"][0], d3dfr=choices["d3dfr"][0], bfm=choices["bfm"][0],
            detector=TEST_DETECTOR, device="cpu"))
    message = str(caught.value)
    assert "sgpn.pth" in message and str(tmp_path / "empty") in message and "sgpn weights download" in message


def test_misplaced_generator_in_facerestore_models_is_reported(comfy_env, tiny_weights, caplog):
    misplaced = comfy_env.user_folder / "sgpn.pth"
    shutil.copy(tiny_weights["sgpn"], misplaced)
    try:
        with caplog.at_level(logging.WARNING):
            comfy_env.pack.model_paths.register_model_folders()
    finally:
        misplaced.unlink()
    assert any(str(misplaced) in r.getMessage() and "models" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("field, wrong, expected", [
    ("generator", "d3dfr_finetune_ours.pth", "D3DFR"),
    ("generator", "GFPGANv1.4.pth", "GFPGAN v1.2/v1.3/v1.4"),
    ("d3dfr", "sgpn.pth", "SGPN generator"),
    ("generator", "broken.pth", "weights file"),
])
def test_wrong_file_is_one_clear_message(comfy_env, field, wrong, expected):
    inputs = dict(generator="sgpn.pth", d3dfr="d3dfr_finetune_ours.pth", bfm=os.path.join("BFM", "BFM09_model_info.mat"),
                  detector=TEST_DETECTOR, device="cpu")
    inputs[field] = wrong  # as an API client could send it (the dropdowns do not offer these files)
    node = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_ModelLoader"]()
    with pytest.raises(comfy_env.pack.errors.SGPNNodeError) as caught:
        node.load(**inputs)
    message = str(caught.value)
    assert expected in message and wrong in message and len(message) < 400, message
    assert caught.value.__suppress_context__ or caught.value.__context__ is None   # no chained traceback
    for internal in ("max() arg", "pop from empty list", "netG.", "Missing key"):
        assert internal not in message


def test_missing_bfm_file_is_one_clear_message(comfy_env, bfm_dir, tmp_path, monkeypatch):
    fp = comfy_env.folder_paths
    (tmp_path / "alone").mkdir()
    shutil.copy(Path(bfm_dir) / "BFM09_model_info.mat", tmp_path / "alone")   # similarity_Lm3D_all.mat missing
    paths = fp.get_folder_paths("sgpn") + [str(tmp_path)]
    monkeypatch.setitem(fp.folder_names_and_paths, "sgpn", (paths, fp.folder_names_and_paths["sgpn"][1]))
    node = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_ModelLoader"]()
    with pytest.raises(comfy_env.pack.errors.SGPNNodeError, match="similarity_Lm3D_all.mat is missing beside"):
        node.load("sgpn.pth", "d3dfr_finetune_ours.pth", os.path.join("alone", "BFM09_model_info.mat"),
                  TEST_DETECTOR, "cpu")


def test_missing_detector_offline_names_the_folder(comfy_env, monkeypatch):
    import facexlib.utils

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(facexlib.utils, "load_file_from_url", offline)
    node = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_ModelLoader"]()
    with pytest.raises(comfy_env.pack.errors.SGPNNodeError) as caught:
        node.load("sgpn.pth", "d3dfr_finetune_ours.pth", os.path.join("BFM", "BFM09_model_info.mat"),
                  "retinaface_resnet50", "cpu")
    message = str(caught.value)
    folder = str(Path(comfy_env.folder_paths.models_dir) / "facedetection")
    assert "detection_Resnet50_Final.pth" in message and folder in message and "network is unreachable" in message
    assert not (comfy_env.bundle / "detection_Resnet50_Final.pth").exists()   # nothing lands in ~/.cache/sgpn


def test_missing_detector_is_downloaded_into_models_facedetection(comfy_env, retinaface_dir, monkeypatch):
    """facexlib's downloader is given models/facedetection (served here from the local copy)."""
    import facexlib.utils

    name = "detection_mobilenet0.25_Final.pth"
    calls = []

    def download(url, model_dir=None, progress=True, file_name=None, save_dir=None):
        calls.append((url, save_dir, file_name))
        shutil.copy(Path(retinaface_dir) / name, Path(save_dir) / file_name)
        return str(Path(save_dir) / file_name)

    folder = Path(comfy_env.folder_paths.models_dir) / "facedetection"
    (folder / name).rename(folder / "moved.pth")
    monkeypatch.setattr(facexlib.utils, "load_file_from_url", download)
    try:
        assert comfy_env.pack.model_paths.facexlib_folder(TEST_DETECTOR) == str(folder)
    finally:
        (folder / "moved.pth").replace(folder / name)
    assert calls == [(calls[0][0], str(folder), name)] and calls[0][0].startswith("https://github.com/xinntao/facexlib/")


def test_no_network_at_import_or_in_input_types(comfy_env, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access from the node pack")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for name in [n for n in sys.modules if n.startswith(PACK_NAME + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, PACK_NAME)
    pack = load_custom_node(comfy_env.custom_nodes, PACK_NAME)
    for node_class in pack.NODE_CLASS_MAPPINGS.values():
        node_class.INPUT_TYPES()


def test_workflows_are_consistent(comfy_env, api_workflow):
    """The UI-format workflow is the API-format one laid out: same nodes, links and widget values."""
    pack = comfy_env.pack
    ui = json.loads(WORKFLOW_UI.read_text(encoding="utf-8"))
    assert {str(n["id"]) for n in ui["nodes"]} == set(api_workflow)
    links = {link[0]: link for link in ui["links"]}
    assert ui["last_node_id"] == max(n["id"] for n in ui["nodes"]) and ui["last_link_id"] == max(links)
    for node in ui["nodes"]:
        api_node = api_workflow[str(node["id"])]
        assert node["type"] == api_node["class_type"]
        for slot in node.get("inputs", []):
            if slot.get("link") is None:
                continue
            _, origin, origin_slot, target, target_slot, kind = links[slot["link"]]
            assert target == node["id"] and api_node["inputs"][slot["name"]] == [str(origin), origin_slot]
        if node["type"] in pack.NODE_CLASS_MAPPINGS:
            node_class = pack.NODE_CLASS_MAPPINGS[node["type"]]
            declared = node_class.INPUT_TYPES()
            specs = {**declared["required"], **declared.get("optional", {})}
            widgets = [name for name, spec in specs.items() if isinstance(spec[0], list) or spec[0] in WIDGET_TYPES]
            assert node["widgets_values"] == [api_node["inputs"][name] for name in widgets]
            for slot, out in enumerate(node["outputs"]):
                assert (out["name"], out["type"]) == (node_class.RETURN_NAMES[slot], node_class.RETURN_TYPES[slot])
    for _, origin, origin_slot, target, _, kind in ui["links"]:
        origin_type = next(n for n in ui["nodes"] if n["id"] == origin)["type"]
        if origin_type in pack.NODE_CLASS_MAPPINGS:
            assert pack.NODE_CLASS_MAPPINGS[origin_type].RETURN_TYPES[origin_slot] == kind


# --------------------------------------------------------------------------------------------
# execution


@pytest.mark.slow
def test_example_workflow_restores_a_real_photo(comfy_env, api_workflow, faces_dir, monkeypatch):
    photo = load_image(faces_dir / PHOTO)
    load_node = _node_of_type(api_workflow, "LoadImage")
    comfy_env.mm.calls.clear()
    comfy_env.utils.bars.clear()
    moves = _record_moves(comfy_env, monkeypatch)
    results, saved = run_workflow(comfy_env.pack, api_workflow, {load_node["inputs"]["image"]: photo},
                                  overrides={"SGPN_ModelLoader": {"detector": TEST_DETECTOR}})

    restore_id = next(k for k, n in api_workflow.items() if n["class_type"] == "SGPN_RestoreFaces")
    image, mask, faces = results[restore_id]
    upscale = api_workflow[restore_id]["inputs"]["upscale"]
    _, height, width, _ = photo.shape
    assert image.dtype == torch.float32 and image.device.type == "cpu"
    assert image.shape == (1, height * upscale, width * upscale, 3) and 0 <= image.min() and image.max() <= 1
    assert mask.shape == (1, height * upscale, width * upscale) and 0 <= mask.min() and mask.max() <= 1
    assert (mask > 0.5).float().mean() > 0.01  # a face was pasted
    assert upscale == 1
    changed = (image - photo).abs().amax(-1)[0] > 1e-6
    assert changed[mask[0] > 0.5].float().mean() > 0.5          # the face changed ...
    assert torch.equal(image[0][_far_from(mask[0], 4)], photo[0][_far_from(mask[0], 4)])  # ... the background did not

    crops_id = next(k for k, n in api_workflow.items() if n["class_type"] == "SGPN_FaceCrops")
    cropped, restored, renders = results[crops_id]
    n_faces = len(faces.restored)
    assert n_faces == 1 and faces.image_index == [0]
    for batch in (cropped, restored, renders):
        assert batch.shape == (n_faces, 512, 512, 3) and batch.dtype == torch.float32
        assert 0 <= batch.min() and batch.max() <= 1
    assert renders.std() > 0.05 and (renders.amax(-1) < 1e-3).float().mean() > 0.2  # a face on black
    assert {prefix for prefix, _ in saved} >= {"SGPN/restored", "preview"}
    assert all(images.ndim == 4 and images.shape[-1] == 3 for _, images in saved)

    # ComfyUI memory protocol: room made on the run device, networks there for the run and back after
    loader_id = next(k for k, n in api_workflow.items() if n["class_type"] == "SGPN_ModelLoader")
    options = api_workflow[restore_id]["inputs"]
    restorer = results[loader_id][0].restorer(options["upscale"], options["det_threshold"])
    assert comfy_env.mm.calls[0][0] == "free_memory" and comfy_env.mm.calls[0][1] > 1e6
    run_moves = [device for owner, device in moves if owner is restorer]
    assert run_moves[-2:] == [comfy_env.mm.get_torch_device(), comfy_env.mm.unet_offload_device()]
    # the progress bar is complete and interrupts were checked during the run
    assert [(bar.total, bar.current) for bar in comfy_env.utils.bars] == [(1, 1)]
    assert ("interrupt_check",) in comfy_env.mm.calls


@pytest.mark.slow
def test_batch_of_two_different_photos(comfy_env, sgpn_model, faces_dir):
    first = load_image(faces_dir / PHOTO)
    _, height, width, _ = first.shape
    second = load_image(faces_dir / SECOND_PHOTO)
    second = torch.nn.functional.interpolate(second.movedim(-1, 1), size=(height, width), mode="bilinear",
                                             antialias=True).movedim(1, -1).clamp(0, 1)
    batch = torch.cat([first, second])
    restore = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_RestoreFaces"]
    image, mask, faces = _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(
        sgpn_model=sgpn_model, image=batch, upscale=2, only_center_face=False, paste_back=True,
        visibility=1.0, det_threshold=restore.INPUT_TYPES()["required"]["det_threshold"][1]["default"]))
    assert image.shape == (2, 2 * height, 2 * width, 3) and mask.shape == (2, 2 * height, 2 * width)
    assert sorted(set(faces.image_index)) == [0, 1] and len(faces.restored) == 2
    assert all((m > 0.5).float().mean() > 0.01 for m in mask)
    assert not torch.allclose(mask[0], mask[1])                   # faces at different places
    assert (image[0] - image[1]).abs().mean() > 0.05             # different content stays different
    up = torch.nn.functional.interpolate(batch.movedim(-1, 1), scale_factor=2, mode="bicubic").movedim(1, -1)
    for i in range(2):
        far = _far_from(mask[i], 8)
        assert (image[i][far] - up[i][far]).abs().mean() < 0.02  # background: the input, upscaled
    crops = _call_node(comfy_env.pack, "SGPN_FaceCrops", {"faces": faces})
    assert all(batch.shape == (2, 512, 512, 3) for batch in crops)


def test_image_without_a_face_passes_through_with_a_warning(comfy_env, sgpn_model, caplog):
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 1, 96, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(gradient[None, :], gradient[:, None], 0.5), -1)
    image = torch.from_numpy((image * 0.8 + 0.1 * rng.random(image.shape)).astype(np.float32))[None]
    inputs = dict(sgpn_model=sgpn_model, image=image, upscale=1, only_center_face=False, paste_back=True,
                  visibility=1.0, det_threshold=0.9)
    with caplog.at_level(logging.WARNING):
        out, mask, faces = _call_node(comfy_env.pack, "SGPN_RestoreFaces", inputs)
        crops = _call_node(comfy_env.pack, "SGPN_FaceCrops", {"faces": faces})
    assert torch.equal(out, image) and out.dtype == torch.float32
    assert mask.shape == (1, 96, 96) and not mask.any()
    assert any("passes through unchanged" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert any("no face" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert not any("--aligned" in r.getMessage() for r in caplog.records)   # a CLI flag means nothing here
    # Preview/Save nodes index the first image: one black image, not an empty batch
    assert all(batch.shape == (1, 512, 512, 3) and not batch.any() for batch in crops)

    out, mask, _ = _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(inputs, upscale=2))
    assert out.shape == (1, 192, 192, 3) and mask.shape == (1, 192, 192)


def test_interrupt_stops_the_run_and_offloads_the_model(comfy_env, sgpn_model, monkeypatch):
    moves = _record_moves(comfy_env, monkeypatch)
    monkeypatch.setattr(comfy_env.mm, "interrupt_processing", True)
    with pytest.raises(InterruptProcessingException):
        _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(
            sgpn_model=sgpn_model, image=torch.rand(1, 64, 64, 3), upscale=1, only_center_face=False,
            paste_back=True, visibility=1.0, det_threshold=0.9))
    assert [device for _, device in moves] == [comfy_env.mm.get_torch_device(), comfy_env.mm.unet_offload_device()]


def test_whole_repository_cloned_into_custom_nodes_exposes_the_pack(comfy_env):
    """Comfy Registry / ComfyUI Manager clone the repository itself: its root re-exports the pack."""
    name = "ComfyUI-SGPN-repository"
    (comfy_env.custom_nodes / name).symlink_to(PACK_DIR.parent, target_is_directory=True)
    try:
        root = load_custom_node(comfy_env.custom_nodes, name)
        assert root.NODE_CLASS_MAPPINGS.keys() == comfy_env.pack.NODE_CLASS_MAPPINGS.keys()
        assert root.NODE_DISPLAY_NAME_MAPPINGS == comfy_env.pack.NODE_DISPLAY_NAME_MAPPINGS
    finally:
        for module in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
            del sys.modules[module]


def _photo_rgba(faces_dir) -> tuple[torch.Tensor, torch.Tensor]:
    photo = load_image(faces_dir / PHOTO)
    alpha = torch.linspace(0.2, 1.0, photo.shape[2]).expand(photo.shape[1], -1)[None, ..., None]
    return torch.cat([photo, alpha], -1), alpha[..., 0]


@pytest.mark.slow
def test_alpha_channel_is_kept(comfy_env, sgpn_model, faces_dir):
    rgba, alpha = _photo_rgba(faces_dir)
    blank = torch.cat([torch.full((1, 64, 64, 3), 0.5), torch.rand(1, 64, 64, 1)], -1)   # no face: passes through
    for image, has_face in ((rgba, True), (blank, False)):
        out, mask, _ = _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(
            sgpn_model=sgpn_model, image=image, upscale=1, only_center_face=False, paste_back=True, visibility=1.0,
            det_threshold=0.9))
        assert out.shape == image.shape and torch.equal(out[..., 3], image[..., 3])   # alpha as it came
        face = mask[0] > 0.5
        assert bool(face.any()) == has_face
        changed = (out[0, ..., :3] - image[0, ..., :3]).abs().amax(-1) > 1e-6
        assert (changed[face].float().mean() > 0.5) if has_face else not changed.any()


@pytest.mark.slow
def test_paste_back_off_keeps_the_image_and_still_masks_the_faces(comfy_env, sgpn_model, faces_dir):
    photo = load_image(faces_dir / PHOTO)
    out, mask, faces = _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(
        sgpn_model=sgpn_model, image=photo, upscale=1, only_center_face=False, paste_back=False, visibility=1.0,
        det_threshold=0.9))
    assert torch.equal(out, photo) and len(faces.restored) == 1
    assert (mask > 0.5).float().mean() > 0.01   # where a detailer / MASK to SEGS node should work


def test_det_threshold_widget_stays_in_the_detector_range(comfy_env, sgpn_model):
    spec = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_RestoreFaces"].INPUT_TYPES()["required"]["det_threshold"][1]
    assert 0 < spec["min"] <= spec["default"] <= spec["max"] < 1
    out, mask, _ = _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(
        sgpn_model=sgpn_model, image=torch.rand(1, 64, 64, 3), upscale=1, only_center_face=False, paste_back=True,
        visibility=1.0, det_threshold=spec["max"]))
    assert out.shape == (1, 64, 64, 3)


def test_fidelity_option_reaches_the_pipeline(comfy_env, sgpn_model):
    restore = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_RestoreFaces"].INPUT_TYPES()["optional"]["fidelity"]
    assert restore[0] == list(comfy_env.pack.nodes.FIDELITY_MODES) and restore[1]["default"] == "default"
    assert sgpn_model.restorer(1, 0.9, False, "official").fidelity == "official"


@pytest.fixture
def parsenet_weights(comfy_env):
    """Random ParseNet weights under facexlib's file name in models/facedetection (real ones: facexlib's release)."""
    from facexlib.parsing.parsenet import ParseNet

    path = Path(comfy_env.folder_paths.models_dir) / "facedetection" / "parsing_parsenet.pth"
    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), path)
    yield path
    path.unlink()


@pytest.mark.slow
def test_face_parsing_paste_back_mask(comfy_env, sgpn_model, faces_dir, parsenet_weights):
    photo = load_image(faces_dir / PHOTO)
    inputs = dict(sgpn_model=sgpn_model, image=photo, upscale=1, only_center_face=False, paste_back=True,
                  visibility=1.0, det_threshold=0.9)
    _, whole_crop, _ = _call_node(comfy_env.pack, "SGPN_RestoreFaces", inputs)
    out, parsed, _ = _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(inputs, face_parsing=True))
    assert sgpn_model.restorer(1, 0.9, True).parser is not None
    assert parsed.shape == whole_crop.shape and not torch.allclose(parsed, whole_crop)
    assert torch.equal(out[0][parsed[0] == 0], photo[0][parsed[0] == 0])   # pasted only inside the parsing mask


def test_face_parsing_weights_missing_offline_is_one_clear_message(comfy_env, sgpn_model, monkeypatch):
    import facexlib.utils

    monkeypatch.setattr(facexlib.utils, "load_file_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(comfy_env.pack.errors.SGPNNodeError) as caught:
        _call_node(comfy_env.pack, "SGPN_RestoreFaces", dict(
            sgpn_model=sgpn_model, image=torch.rand(1, 64, 64, 3), upscale=3, only_center_face=False,
            paste_back=True, visibility=1.0, det_threshold=0.9, face_parsing=True))   # settings not built before
    assert "parsing_parsenet.pth" in str(caught.value)
    assert str(Path(comfy_env.folder_paths.models_dir) / "facedetection") in str(caught.value)


def _ffhq_crop(comfy_env, sgpn_model, faces_dir) -> torch.Tensor:
    """What facexlib's FaceRestoreHelper hands a FACERESTORE_MODEL: an FFHQ-aligned 512 crop, RGB in [-1, 1]."""
    import cv2

    align = comfy_env.pack.sgpn_arch.pipeline.align
    bgr = cv2.imread(str(faces_dir / PHOTO))
    (landmarks,) = sgpn_model.restorer(1, 0.9).detect(bgr)
    matrix = align.similarity_transform(landmarks, align.get_template("ffhq", 512))
    crop = cv2.warpAffine(bgr, matrix, (512, 512), borderMode=cv2.BORDER_CONSTANT, borderValue=(135, 133, 132))
    return torch.from_numpy(crop[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.mark.slow
def test_facerestore_model_output_works_like_the_face_packs_expect(comfy_env, sgpn_model, faces_dir):
    loader = comfy_env.pack.NODE_CLASS_MAPPINGS["SGPN_ModelLoader"]
    assert loader.RETURN_TYPES[1] == "FACERESTORE_MODEL"   # facerestore_cf's type name
    inputs = dict(generator="sgpn.pth", d3dfr="d3dfr_finetune_ours.pth",
                  bfm=os.path.join("BFM", "BFM09_model_info.mat"), detector=TEST_DETECTOR, device="cpu")
    _, model = _call_node(comfy_env.pack, "SGPN_ModelLoader", inputs)
    crop = _ffhq_crop(comfy_env, sgpn_model, faces_dir)
    model.to("cpu")                                       # what the consumers do before calling it
    with torch.no_grad():
        outputs = [model(crop, w=0.5)[0], model(crop, weight=0.5)[0], model(crop)[0]]
    assert all(torch.equal(o, outputs[0]) for o in outputs)
    out = outputs[0]
    assert out.shape == (1, 3, 512, 512) and out.dtype == torch.float32 and -1 <= out.min() and out.max() <= 1
    assert (out - crop)[..., 192:352, 160:352].abs().mean() > 0.01   # the face was restored

    # the official weights' template: the FFHQ crop is re-aligned so its landmarks land on the SGPN template
    align = comfy_env.pack.sgpn_arch.pipeline.align
    ffhq = torch.from_numpy(align.get_template("ffhq", 512))[None]
    moved = align.transform_points(ffhq, model.to_model)
    assert torch.allclose(moved, model.landmarks, atol=1e-3)   # the landmarks SGPN is given are where they are
    sgpn_template = torch.from_numpy(align.get_template("sgpn", 512))
    assert (moved - sgpn_template).abs().max() < 8     # near the template (the inverse matrix: 19 px off)
    # trained on FFHQ alignment: the network sees the crop as it is, with the FFHQ landmarks
    _, ffhq_model = _call_node(comfy_env.pack, "SGPN_ModelLoader", dict(inputs, template="ffhq"))
    expected = ffhq_model.network.restore(crop, ffhq).restored
    assert torch.allclose(ffhq_model(crop, w=0.7)[0], expected)


def test_run_device_move_takes_every_detector_tensor(comfy_env):
    """device "auto" moves the pipeline to ComfyUI's GPU: facexlib's detector keeps its pixel mean outside its
    buffers, and a CUDA run failed with "found at least two devices" (seen on an H200). "meta" stands in
    for the GPU here: it shows where every tensor went without needing one."""
    inputs = dict(generator="sgpn.pth", d3dfr="d3dfr_finetune_ours.pth",
                  bfm=os.path.join("BFM", "BFM09_model_info.mat"), detector=TEST_DETECTOR, device="auto")
    model, _ = _call_node(comfy_env.pack, "SGPN_ModelLoader", inputs)
    restorer = model.restorer(1, 0.9)
    restorer.to("meta")
    detector_tensors = [value for value in vars(restorer.detector).values() if isinstance(value, torch.Tensor)]
    assert detector_tensors and all(t.device.type == "meta" for t in detector_tensors)
    assert all(p.device.type == "meta" for p in restorer.detector.parameters())


def test_compile_option_reaches_the_network(comfy_env, monkeypatch):
    monkeypatch.delenv("SGPN_COMPILE")   # "auto" as a user without the variable gets it
    inputs = dict(generator="sgpn.pth", d3dfr="d3dfr_finetune_ours.pth",
                  bfm=os.path.join("BFM", "BFM09_model_info.mat"), detector=TEST_DETECTOR, device="cpu")
    for choice, compiled in (("auto", True), ("off", False)):
        model, _ = _call_node(comfy_env.pack, "SGPN_ModelLoader", dict(inputs, compile=choice))
        network = model.restorer(1, 0.9).model   # nothing compiles until the first restore
        assert (network.compiled_generator is not None) == compiled
