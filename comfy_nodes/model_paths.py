"""Where the pack's files live: its folders in ComfyUI's ``folder_paths`` registry and the dropdown choices.

- ``models/sgpn`` (ComfyUI folder name ``sgpn``): the SGPN generator, D3DFR and BFM09 folders. Also searched,
  so nothing has to be copied by hand: ``weights_dir()`` (``SGPN_WEIGHTS_DIR``, default ``~/.cache/sgpn``),
  where ``sgpn weights download`` / ``sgpn weights import`` install the official bundle (``sgpn.pth``,
  ``d3dfr_finetune_ours.pth``, ``BFM/``), and the BFM folder of ``SGPN_BFM_DIR``.
- ``models/facedetection``: facexlib's detector and face-parsing weights; a missing one is downloaded there.

Entries that already exist (``extra_model_paths.yaml``, other packs) are extended, never replaced. The
``facerestore_models`` folder is deliberately not used: ReActor and facerestore_cf offer every file in it
and cannot load an SGPN generator.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import folder_paths

from .sgpn_arch.face3d.bfm import LANDMARK_FILE, MODEL_FILE
from .sgpn_arch.zoo import weights
from .weight_layouts import file_layout

logger = logging.getLogger(__name__)

SGPN_FOLDER = "sgpn"
DETECTION_FOLDER = "facedetection"
FOREIGN_FOLDER = "facerestore_models"   # other packs' restorer folder: only checked for a misplaced sgpn.pth
WEIGHT_EXTENSIONS = frozenset({".pth", ".pt", ".ckpt", ".bin", ".safetensors"})

GENERATOR = "sgpn_generator"
D3DFR = "d3dfr"
PREFERRED = {GENERATOR: "sgpn.pth", D3DFR: "d3dfr_finetune_ours.pth"}
WHAT = {GENERATOR: "SGPN generator", D3DFR: "D3DFR", "bfm": "BFM09 folder"}
NONE_FOUND = {GENERATOR: "(no SGPN generator found)", D3DFR: "(no D3DFR found)", "bfm": "(no BFM09 found)"}


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


def _bfm_env_folder() -> Path | None:
    """The folder ``resolve_bfm_folder()`` names (option-less: ``SGPN_BFM_DIR``, or the bundle's), if any."""
    try:
        return Path(weights.resolve_bfm_folder())
    except weights.WeightsError:
        return None


def register_model_folders() -> None:
    """Create ``models/sgpn`` and ``models/facedetection`` and register them (plus the bundle's folders)."""
    models_dir = folder_paths.models_dir
    for name in (SGPN_FOLDER, DETECTION_FOLDER):
        try:
            os.makedirs(os.path.join(models_dir, name), exist_ok=True)
        except OSError as err:   # read-only installs: the folders can still come from extra_model_paths.yaml
            logger.warning("SGPN: cannot create %s: %s", os.path.join(models_dir, name), err)
    _merge_folder(SGPN_FOLDER, os.path.join(models_dir, SGPN_FOLDER), WEIGHT_EXTENSIONS | {".mat"})
    _merge_folder(DETECTION_FOLDER, os.path.join(models_dir, DETECTION_FOLDER), WEIGHT_EXTENSIONS)
    _merge_folder(SGPN_FOLDER, str(weights.weights_dir()), WEIGHT_EXTENSIONS | {".mat"})
    bfm = _bfm_env_folder()
    if bfm is not None and not any(_is_within(bfm, Path(p)) for p in folder_paths.get_folder_paths(SGPN_FOLDER)):
        _merge_folder(SGPN_FOLDER, str(bfm), WEIGHT_EXTENSIONS | {".mat"})
    _warn_about_misplaced_generator()


def _is_within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _warn_about_misplaced_generator() -> None:
    """Earlier versions of this README said ``models/facerestore_models``: say where the file belongs now."""
    if FOREIGN_FOLDER not in folder_paths.folder_names_and_paths:
        return
    for folder in folder_paths.get_folder_paths(FOREIGN_FOLDER):
        misplaced = os.path.join(folder, PREFERRED[GENERATOR])
        if os.path.isfile(misplaced):
            logger.warning("SGPN: %s is not read from facerestore_models (ReActor and facerestore_cf list that folder "
                           "and cannot load it); move it to %s", misplaced, sgpn_folders()[0])


def sgpn_folders() -> list[str]:
    """The folders searched for the generator, D3DFR and BFM, ``models/sgpn`` first."""
    return folder_paths.get_folder_paths(SGPN_FOLDER)


def _weights_of_layout(layout: str) -> list[str]:
    """Weight files under the ``sgpn`` folders whose keys are ``layout``; the official file name first."""
    found = []
    for name in folder_paths.get_filename_list(SGPN_FOLDER):
        if os.path.splitext(name)[1].lower() not in WEIGHT_EXTENSIONS:
            continue
        path = folder_paths.get_full_path(SGPN_FOLDER, name)
        if path is not None and file_layout(path) == layout:
            found.append(name)
    return sorted(found, key=lambda name: (os.path.basename(name) != PREFERRED[layout], name))


def generator_choices() -> list[str]:
    """SGPN generator files (told by their keys, not their names), ``sgpn.pth`` first."""
    return _weights_of_layout(GENERATOR) or [NONE_FOUND[GENERATOR]]


def d3dfr_choices() -> list[str]:
    """D3DFR files (``d3dfr_finetune_ours.pth`` for the official model) first by name."""
    return _weights_of_layout(D3DFR) or [NONE_FOUND[D3DFR]]


def bfm_choices() -> list[str]:
    """Every ``BFM09_model_info.mat`` under the ``sgpn`` folders; the one of ``resolve_bfm_folder()`` first."""
    found = [name for name in folder_paths.get_filename_list(SGPN_FOLDER) if os.path.basename(name) == MODEL_FILE]
    default = _bfm_env_folder()

    def is_default(name: str) -> bool:
        path = folder_paths.get_full_path(SGPN_FOLDER, name)
        return default is not None and path is not None and Path(path).parent.resolve() == default.resolve()

    return sorted(found, key=lambda name: (not is_default(name), name)) or [NONE_FOUND["bfm"]]


def _missing(kind: str, filename: str) -> str:
    return (f"no {WHAT[kind]} found: put {filename} into one of {', '.join(sgpn_folders())} (the official files: "
            "`sgpn weights download`, or `sgpn weights import <bundle.zip>` for a bundle downloaded by hand), "
            "then refresh the node definitions (R) and pick it in the loader")


def weight_path(kind: str, name: str) -> str:
    """Full path of a generator/D3DFR choice; raises ``FileNotFoundError`` saying where files go."""
    path = None if name == NONE_FOUND[kind] else folder_paths.get_full_path(SGPN_FOLDER, name)
    if path is None:
        raise FileNotFoundError(_missing(kind, PREFERRED[kind]) if name == NONE_FOUND[kind] else
                                f"{name} is not in {', '.join(sgpn_folders())} any more; refresh the node definitions")
    return path


def bfm_folder(name: str) -> str:
    """The folder holding the chosen ``BFM09_model_info.mat``; it must hold ``similarity_Lm3D_all.mat`` too."""
    path = None if name == NONE_FOUND["bfm"] else folder_paths.get_full_path(SGPN_FOLDER, name)
    if path is None:
        raise FileNotFoundError(_missing("bfm", f"a folder holding {MODEL_FILE} and {LANDMARK_FILE}"))
    folder = os.path.dirname(path)
    if not os.path.isfile(os.path.join(folder, LANDMARK_FILE)):
        raise FileNotFoundError(f"{LANDMARK_FILE} is missing beside {path}: both BFM files must sit in one folder")
    return folder


def facexlib_folder(name: str) -> str:
    """A folder holding facexlib weight ``name`` (a detector or ``parsenet``) under its facexlib file name.

    Looked for in the ``facedetection`` folders, then in ``weights_dir()``; otherwise downloaded into
    ``models/facedetection`` (verified by sha256 where the zoo knows it).
    """
    spec = weights.MODEL_ZOO[name]
    folders = folder_paths.get_folder_paths(DETECTION_FOLDER)
    for folder in folders + [str(weights.weights_dir())]:
        if os.path.isfile(os.path.join(folder, spec.filename)):
            return folder
    target = folders[0]
    from facexlib.utils import load_file_from_url

    logger.info("SGPN: downloading %s into %s", spec.filename, target)
    try:
        path = Path(load_file_from_url(spec.url, save_dir=target, file_name=spec.filename, progress=False))
    except Exception as err:   # offline, proxy, HTTP errors: one message naming the file and the folder
        raise weights.WeightsError(
            f"{spec.description} ({spec.filename}) is not in {', '.join(folders)} and could not be downloaded from "
            f"{spec.url} ({type(err).__name__}: {err}). Download it by hand and put it into {target}") from None
    try:
        weights.verify(spec, path)
    except weights.WeightsError:
        path.unlink()
        raise
    return target
