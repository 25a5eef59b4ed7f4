"""ComfyUI node pack for SGPN face restoration.

ComfyUI imports this package from ``custom_nodes/<folder>/__init__.py`` (or, in a clone of the whole
repository, through the repository root's ``__init__.py``) and reads ``NODE_CLASS_MAPPINGS`` /
``NODE_DISPLAY_NAME_MAPPINGS``. The networks and the pipeline come from the repository's own ``sgpn_arch``
folder, loaded as the private subpackage ``<this package>.sgpn_arch`` (see ``sgpn_package``): nothing has
to be pip-installed besides ``requirements.txt``, and no other pack's modules are touched.
"""

from .sgpn_package import load_private

load_private(__name__, __file__)

from .model_paths import register_model_folders  # noqa: E402  (needs the private sgpn_arch loaded above)
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
