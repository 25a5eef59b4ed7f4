"""ComfyUI node pack for SGPN face restoration.

ComfyUI imports this package from ``custom_nodes/<folder>/__init__.py`` and reads
``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS``. The networks and the pipeline come from
the ``sgpn-restore`` distribution, which must be pip-installed into ComfyUI's Python.
"""

try:
    import sgpn_arch  # noqa: F401
except ImportError as err:
    raise ImportError(
        "the SGPN nodes need the sgpn-restore package in ComfyUI's Python environment: run "
        "`python -m pip install sgpn-restore` (or `pip install -e <repository>`) with the Python ComfyUI runs on"
    ) from err

from .model_paths import register_model_folders
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
