"""The restorers behind the demo: built lazily through a factory, one per upscale factor, used one at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sgpn_arch.bfm import BFMError
from sgpn_arch.cpu_memory import keep_freed_memory
from sgpn_arch.restorer import FaceRestorer
from sgpn_arch.weights import WeightsError

from .config import DemoConfig

logger = logging.getLogger(__name__)

RestorerFactory = Callable[[int], FaceRestorer]
"""Builds the :class:`FaceRestorer` for an output upscale factor."""

# What a missing or unreadable model file raises; anything else is a bug and propagates.
SETUP_ERRORS = (WeightsError, BFMError, FileNotFoundError)

SETUP_HELP = """\
**How to provide them** (then restart the app; on a Hugging Face Space, add them under
*Settings → Variables and secrets*, or upload files to the Space):
- SGPN generator (`sgpn.pth`) and D3DFR (`d3dfr_finetune_ours.pth`): set `SGPN_HF_REPO` to the Hub model
  repository that holds them (default `sgpn-restore/sgpn-weights`; downloaded once and cached), or point
  `SGPN_WEIGHTS_SGPN` / `SGPN_WEIGHTS_D3DFR` at local files, or put them in `SGPN_WEIGHTS_DIR` (default `~/.cache/sgpn`).
- Basel Face Model 2009 (cannot be redistributed): convert it to `BFM09_model_info.mat`, put it in a folder
  with `similarity_Lm3D_all.mat`, and set `SGPN_BFM_DIR` to that folder.
- Face detector: downloaded on first use, or given with `SGPN_WEIGHTS_RETINAFACE_RESNET50`.
"""


class ModelUnavailableError(RuntimeError):
    """The restoration model cannot be built.

    ``reason`` is the loader's one-line message (which file, where it was looked for); the string form
    adds, in Markdown, how to provide the missing files.
    """

    def __init__(self, reason: str):
        super().__init__(f"### The restoration model is not available\n\n{reason}\n\n{SETUP_HELP}")
        self.reason = reason


def default_restorer_factory(config: DemoConfig) -> RestorerFactory:
    """A factory that loads SGPN once through the weights zoo and shares it between upscale factors."""
    loaded: list[FaceRestorer] = []

    def factory(upscale: int) -> FaceRestorer:
        options = dict(device=config.device, upscale=upscale, detector=config.detector,
                       allow_download=config.allow_download)
        if loaded:
            return FaceRestorer(loaded[0].model, **options)
        loaded.append(FaceRestorer(generator=config.generator, d3dfr=config.d3dfr, bfm_folder=config.bfm_dir,
                                   **options))
        if config.keep_memory and loaded[0].device.type == "cpu":   # a dedicated server process
            keep_freed_memory()
        return loaded[0]

    return factory


class RestorerPool:
    """Restorers by upscale factor, built on first use; :meth:`use` serialises access (the detector keeps state)."""

    def __init__(self, factory: RestorerFactory):
        self._factory = factory
        self._restorers: dict[int, FaceRestorer] = {}
        self._lock = threading.Lock()

    def _get(self, upscale: int) -> FaceRestorer:
        if upscale not in self._restorers:
            try:
                self._restorers[upscale] = self._factory(upscale)
            except SETUP_ERRORS as error:
                logger.warning("restoration model not available: %s", error)
                raise ModelUnavailableError(str(error)) from error
        return self._restorers[upscale]

    def check(self, upscale: int) -> str | None:
        """Build the restorer for ``upscale`` now; return the explanation when that is impossible."""
        try:
            with self.use(upscale):
                return None
        except ModelUnavailableError as error:
            return str(error)

    @contextmanager
    def use(self, upscale: int) -> Iterator[FaceRestorer]:
        """The restorer for ``upscale``, held exclusively for the ``with`` block."""
        with self._lock:
            yield self._get(upscale)
