"""Which network a weight file holds, read from its key names only and cached per file version.

The loader's dropdowns are rebuilt every time ComfyUI asks for the node definitions, so reading a file must
stay cheap: ``.safetensors`` headers and memory-mapped torch zip files give the keys without reading tensors,
and the answer is kept until the file's modification time or size changes.
"""

from __future__ import annotations

import logging
import os

from .sgpn_arch.zoo.checkpoint_layouts import identify_layout
from .sgpn_arch.zoo.checkpoints import state_dict_keys

logger = logging.getLogger(__name__)

_cache: dict[str, tuple[tuple[int, int], str | None]] = {}


def file_layout(path: str) -> str | None:
    """The :mod:`checkpoint_layouts` name of the network in ``path``, or None (unknown or unreadable)."""
    stat = os.stat(path)
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    try:
        layout = identify_layout(state_dict_keys(path))
    except Exception as err:   # not a checkpoint, damaged, pickle with code: it is simply not offered
        reason = (str(err).splitlines() or [""])[0][:160]
        logger.warning("SGPN: %s is not a readable weights file (%s: %s); not listed", path, type(err).__name__, reason)
        layout = None
    name = layout.name if layout is not None else None
    _cache[path] = (version, name)
    return name

