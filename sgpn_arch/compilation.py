"""Compiled inference of a network with ``torch.compile``: where it pays, cached on disk, eager if it fails.

On the 2-core CPU the compiled SGPN generator takes about half the time of the eager one (0.5–0.6× GFPGAN's
generator against 1.2×, ``benchmarks/RESULTS.md``); on an H200 it is slower at batch 1. So "auto" compiles
on CPU only (``SGPN_COMPILE=0`` in the environment turns that off, e.g. for a front end). Compilation is slow
the first time (1–3 min on 2 cores); Inductor's on-disk caches (FX graph and AOTAutograd) keep its result in
:func:`compile_cache_dir`, so a later process only traces the network again (seconds). Without a working C++
compiler (or Triton on GPUs) the first call fails inside ``torch.compile``: the network then runs eager,
with one warning.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

COMPILE_CHOICES = (False, True, "auto")
AUTO_DEVICES = ("cpu",)
# freezing: weights become constants, so inductor folds the equalised-lr scaling and pre-packs convs
INDUCTOR_OPTIONS = {"freezing": True}


# read once: torch sets the variable to its own default (under /tmp) the first time it compiles anything
_USER_CACHE_DIR = os.environ.get("TORCHINDUCTOR_CACHE_DIR")


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept: ``TORCHINDUCTOR_CACHE_DIR`` if the user set it, else
    ``~/.cache/sgpn/inductor``."""
    return Path(_USER_CACHE_DIR or Path.home() / ".cache" / "sgpn" / "inductor").expanduser()


@contextmanager
def _inductor_cache() -> Iterator[None]:
    """Point Inductor at :func:`compile_cache_dir` for the duration (a host process keeps its own setting)."""
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


class CompiledInference:
    """Calls ``module`` through ``torch.compile`` on the devices in ``devices`` (None: all), eager elsewhere.

    Not an ``nn.Module``: holding one adds no state-dict keys. If compiling fails (no C++ compiler, an
    unsupported platform), it logs a warning and runs eager from then on.
    """

    def __init__(self, module: nn.Module, devices: tuple[str, ...] | None):
        self.module = module
        self.devices = devices
        self._compiled: Callable | None = torch.compile(module, options=INDUCTOR_OPTIONS)

    def uses_compiled(self, device: torch.device) -> bool:
        """Whether a call on ``device`` goes through the compiled module."""
        return self._compiled is not None and (self.devices is None or device.type in self.devices)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.uses_compiled(inputs[0].device):
            try:
                with _inductor_cache():
                    return self._compiled(*inputs)
            except Exception as err:   # compiler missing or failing: eager still gives the same result
                logger.warning("torch.compile failed (%s: %s); running without compiling from now on "
                               "(compile=False / --no-compile skips the attempt)", type(err).__name__, err)
                self._compiled = None
        return self.module(*inputs)


def compile_devices(compile: bool | str) -> tuple[str, ...] | None:
    """The device types on which ``compile`` runs the network compiled: ``()`` none, ``None`` all.

    ``"auto"`` → where it pays (CPU), unless the environment sets ``SGPN_COMPILE=0``; ``True`` → all.
    """
    if compile not in COMPILE_CHOICES:
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    if compile == "auto":
        return () if os.environ.get("SGPN_COMPILE") == "0" else AUTO_DEVICES
    return None if compile else ()
