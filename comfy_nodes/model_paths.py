"""The pack's model folders, merged into ComfyUI's ``folder_paths`` registry.

``models/sgpn`` holds the D3DFR weights and BFM folders (and may hold the generator too);
``models/facerestore_models`` is the folder other face-restoration packs already use for restorer
weights, so the SGPN generator is looked for there as well; ``models/facedetection`` is where the
face packs keep facexlib's detector weights.
Existing entries (other packs, ``extra_model_paths.yaml``) are extended, never replaced.
"""

from __future__ import annotations

import os

import folder_paths

SGPN_FOLDER = "sgpn"
RESTORER_FOLDER = "facerestore_models"
DETECTION_FOLDER = "facedetection"

BFM_FILE = "BFM09_model_info.mat"
WEIGHT_EXTENSIONS = frozenset({".pth", ".pt", ".ckpt", ".bin", ".safetensors"})

# facexlib's file name for each detector; it downloads a missing one into the folder it is given.
DETECTOR_FILES = {
    "retinaface_resnet50": "detection_Resnet50_Final.pth",
    "retinaface_mobile0.25": "detection_mobilenet0.25_Final.pth",
}


def _merge_folder(name: str, path: str, extensions: frozenset[str]) -> None:
    """Append ``path`` to the ``name`` entry (created if missing) and make sure ``extensions`` are listed."""
    entry = folder_paths.folder_names_and_paths.get(name)
    if entry is None:
        folder_paths.folder_names_and_paths[name] = ([path], set(extensions))
        return
    paths, known = entry
    if path not in paths:
        folder_paths.add_model_folder_path(name, path)
    # an empty extension set means "every file"; otherwise add ours without touching the shared set object
    if known and not extensions <= set(known):
        folder_paths.folder_names_and_paths[name] = (paths, set(known) | extensions)


def register_model_folders() -> None:
    """Register ``models/sgpn``, ``models/facerestore_models`` and ``models/facedetection``."""
    models_dir = folder_paths.models_dir
    _merge_folder(SGPN_FOLDER, os.path.join(models_dir, SGPN_FOLDER), WEIGHT_EXTENSIONS | {".mat"})
    _merge_folder(RESTORER_FOLDER, os.path.join(models_dir, RESTORER_FOLDER), WEIGHT_EXTENSIONS)
    _merge_folder(DETECTION_FOLDER, os.path.join(models_dir, DETECTION_FOLDER), WEIGHT_EXTENSIONS)


def _weight_files(folder: str) -> list[str]:
    return [name for name in folder_paths.get_filename_list(folder)
            if os.path.splitext(name)[1].lower() in WEIGHT_EXTENSIONS]


def generator_choices() -> list[str]:
    """Weight files that may hold an SGPN generator: those of ``sgpn`` and ``facerestore_models``."""
    return sorted(set(_weight_files(SGPN_FOLDER)) | set(_weight_files(RESTORER_FOLDER)))


def d3dfr_choices() -> list[str]:
    """Weight files in the ``sgpn`` folders (D3DFR: ``d3dfr_finetune_ours.pth`` for the official model)."""
    return _weight_files(SGPN_FOLDER)


def bfm_choices() -> list[str]:
    """Every ``BFM09_model_info.mat`` under the ``sgpn`` folders, as paths relative to them."""
    return [name for name in folder_paths.get_filename_list(SGPN_FOLDER) if os.path.basename(name) == BFM_FILE]


def generator_path(name: str) -> str:
    """Full path of a generator choice (``sgpn`` folders first, then ``facerestore_models``)."""
    return folder_paths.get_full_path(SGPN_FOLDER, name) or folder_paths.get_full_path_or_raise(RESTORER_FOLDER, name)


def d3dfr_path(name: str) -> str:
    return folder_paths.get_full_path_or_raise(SGPN_FOLDER, name)


def bfm_folder(name: str) -> str:
    """The folder holding the chosen ``BFM09_model_info.mat`` (and ``similarity_Lm3D_all.mat``)."""
    return os.path.dirname(folder_paths.get_full_path_or_raise(SGPN_FOLDER, name))


def detector_folder(detector: str) -> str:
    """The ``facedetection`` folder that already holds the detector's weights, else the first one."""
    folders = folder_paths.get_folder_paths(DETECTION_FOLDER)
    filename = DETECTOR_FILES.get(detector, "")
    for folder in folders:
        if filename and os.path.isfile(os.path.join(folder, filename)):
            return folder
    return folders[0]
