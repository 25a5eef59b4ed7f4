"""Loads the ``sgpn_arch`` package that ships with this node pack, under a module name no other pack can hold.

ComfyUI imports a pack from ``custom_nodes/<folder>/__init__.py`` under a name of its own (the folder's path
with dots replaced, or the folder name in older versions) and does not put the folder on ``sys.path``, so a
plain ``import sgpn_arch`` fails in a clone — and where it succeeds it may return another pack's
``sgpn_arch``. Instead the pack loads the ``sgpn_arch`` folder beside its own folder (the repository layout
every install has: a Manager/Registry clone, or a link to ``comfy_nodes/`` of a clone) as the private
subpackage ``<pack>.sgpn_arch``. ``sgpn_arch`` imports its own modules relatively, which is what makes that
possible; whatever else is in ``sys.modules`` (another ``sgpn_arch``, ``basicsr``) is neither used nor replaced.
Only when this folder was copied without its repository is the installed ``sgpn-restore`` distribution's
``sgpn_arch`` folder loaded the same way.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "sgpn_arch"


def package_folder(pack_file: str) -> Path:
    """The ``sgpn_arch`` folder this pack uses: the sibling of the pack's folder, else the installed one."""
    sibling = Path(pack_file).resolve().parent.parent / PACKAGE
    if (sibling / "__init__.py").is_file():
        return sibling
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the SGPN nodes cannot find their sgpn_arch package (looked for {sibling}): clone the whole "
            "repository into ComfyUI/custom_nodes/ (ComfyUI-Manager and the Comfy Registry do), or link "
            "comfy_nodes/ from a full clone")
    return Path(next(iter(spec.submodule_search_locations)))


def load_private(pack_name: str, pack_file: str) -> ModuleType:
    """Import ``sgpn_arch`` as ``<pack_name>.sgpn_arch`` (once; later calls return the loaded module)."""
    name = f"{pack_name}.{PACKAGE}"
    if name in sys.modules:
        return sys.modules[name]
    folder = package_folder(pack_file)
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    setattr(sys.modules[pack_name], PACKAGE, module)   # as the import system binds a loaded submodule
    return module
