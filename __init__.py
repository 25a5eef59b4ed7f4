"""ComfyUI entry point when the whole repository is cloned into ``ComfyUI/custom_nodes/``: the SGPN node pack.

Outside ComfyUI (no ``folder_paths`` module, e.g. when a test runner imports this folder) it exposes no nodes.
"""

try:
    import folder_paths  # noqa: F401  (provided by ComfyUI)
except ImportError:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}
else:
    from .comfy_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
