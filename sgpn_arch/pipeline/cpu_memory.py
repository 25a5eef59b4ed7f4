"""Keep freed CPU memory in the process, so repeated restores do not page-fault their activations in again.

glibc's ``malloc`` gives every block above its mmap threshold (128 KiB … 32 MiB) its own mapping and
unmaps it on ``free``. A 512 restore allocates about 2.3 GiB of such short-lived activations, so every
face takes ~600,000 page faults, each zero-filling 4 KiB: about a quarter of a CPU restore's time on the
2-core machine (see ``benchmarks/RESULTS.md``). Serving large blocks from the heap and (almost) never
trimming it removes those faults, at a price: the heap fragments, so the peak grows (a compiled restore
2.56 GiB instead of 2.20 GiB) and the process holds it until it exits. That suits a command-line batch or a
dedicated demo server, not a host process shared with other models (ComfyUI): it is opt-in
(``sgpn restore --keep-memory``, on by default only in the Gradio app) and nothing calls it on import.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# largest value mallopt accepts (an int): free memory at the top of the heap beyond this is returned
TRIM_THRESHOLD_MAX = 2 ** 31 - 1

_kept = False


def keep_freed_memory() -> bool:
    """Make glibc serve large allocations from the heap and keep freed memory (process-wide).

    Returns ``True`` when applied; ``False`` (and changes nothing) outside Linux/glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False   # musl and other C libraries: their mallopt does not take these parameters
    global _kept
    applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_MAX) == 1
    if applied:
        logger.debug("glibc malloc: large blocks from the heap, freed memory kept")
        _kept = True
    return applied


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has been applied in this process."""
    return _kept
