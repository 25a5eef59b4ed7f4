"""The model behind the demo: loaded once in a background thread (the page is served meanwhile), then lent
out as :class:`FaceRestorer` objects, one per concurrent restoration."""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgpn_arch.face3d.bfm import LANDMARK_FILE, MODEL_FILE, BFMError
from sgpn_arch.nets.model import build_sgpn
from sgpn_arch.pipeline.bg_upsampler import build_bg_upsampler
from sgpn_arch.pipeline.cpu_memory import keep_freed_memory
from sgpn_arch.pipeline.restorer import FaceRestorer
from sgpn_arch.zoo.weights import WeightsError, resolve_bfm_folder, resolve_weights, stage_for_facexlib

from .config import DemoConfig

logger = logging.getLogger(__name__)

# What a missing, unreachable or unreadable model file raises (ValueError: a file of the wrong network);
# anything else is a bug and propagates.
FILE_ERRORS = (WeightsError, BFMError, FileNotFoundError)
SETUP_ERRORS = FILE_ERRORS + (ValueError,)

SETUP_HELP = """\
**How to provide them** (then restart the app; on a Hugging Face Space: *Settings → Restart*):
- SGPN generator (`sgpn.pth`), D3DFR (`d3dfr_finetune_ours.pth`) and the converted BFM folder all come with the
  official SGPN release bundle, which the app downloads on start (`SGPN_ALLOW_DOWNLOAD`, on by default) into
  `SGPN_WEIGHTS_DIR` (default `~/.cache/sgpn`). Where Google Drive refuses, run `sgpn weights import PATH` on a
  bundle downloaded in a browser and point `SGPN_WEIGHTS_DIR` at the result, or give single files with
  `SGPN_WEIGHTS_SGPN`, `SGPN_WEIGHTS_D3DFR` and `SGPN_BFM_DIR`, or a Hub mirror you publish with `SGPN_HF_REPO`.
- Face detector: downloaded on first use from the facexlib release, or given with
  `SGPN_WEIGHTS_RETINAFACE_RESNET50` / `SGPN_WEIGHTS_RETINAFACE_MOBILE025`.
"""


@dataclass(frozen=True)
class RestoreSettings:
    """The per-request choices that need a differently built :class:`FaceRestorer`."""

    upscale: int = 2
    use_parse: bool = False
    fidelity: str = "default"
    background: bool = False    # Real-ESRGAN background upsampling (sgpn_arch.pipeline.bg_upsampler)


RestorerFactory = Callable[[RestoreSettings], FaceRestorer]
"""Builds a :class:`FaceRestorer` (sharing the loaded SGPN) for a set of :class:`RestoreSettings`."""

ModelLoader = Callable[[Callable[[str], None]], RestorerFactory]
"""Loads the model, reporting each step through its argument, and returns the factory of restorers."""


class ModelUnavailableError(RuntimeError):
    """The restoration model (or a network an option needs) cannot be built.

    ``reason`` names every missing file and why; the string form adds, in Markdown, how to provide them.
    """

    def __init__(self, reason: str):
        super().__init__(f"### The restoration model is not available\n\n{reason}\n\n{SETUP_HELP}")
        self.reason = reason


def explain(error: BaseException) -> str:
    """``error``'s message, followed by its innermost cause (e.g. a refused connection) when the message omits it."""
    message = str(error) or type(error).__name__
    root, seen = error, set()
    while (root.__cause__ or root.__context__) is not None and id(root) not in seen:
        seen.add(id(root))
        root = root.__cause__ or root.__context__
    if root is not error and str(root) and str(root) not in message:
        message += f" (cause: {type(root).__name__}: {root})"
    return message


def _check_bfm(folder: Path) -> Path:
    missing = [name for name in (MODEL_FILE, LANDMARK_FILE) if not (folder / name).is_file()]
    if missing:
        raise BFMError(f"Basel Face Model: {' and '.join(missing)} not found in {folder}")
    return folder


def sgpn_loader(config: DemoConfig) -> ModelLoader:
    """The default loader: every file through the weights zoo, all problems gathered into one message."""

    def load(report: Callable[[str], None]) -> RestorerFactory:
        problems: list[str] = []

        def need(what: str, get, step: str = "getting"):
            report(f"{step} {what}")
            try:
                return get()
            except SETUP_ERRORS as error:
                logger.warning("%s: %s", what, error)
                problems.append(f"- **{what}**: {explain(error)}")
                return None

        timeout, download = config.download_timeout, config.allow_download
        generator = need("the SGPN generator (sgpn.pth)",
                         lambda: resolve_weights("sgpn", config.generator, download, timeout=timeout))
        d3dfr = need("the D3DFR network (d3dfr_finetune_ours.pth)",
                     lambda: resolve_weights("d3dfr", config.d3dfr, download, timeout=timeout))
        bfm = need("the Basel Face Model folder",
                   lambda: _check_bfm(resolve_bfm_folder(config.bfm_dir, download, timeout=timeout)))
        detector = need(f"the face detector ({config.detector})",
                        lambda: resolve_weights(config.detector, None, download, timeout=timeout))
        model = None
        if not problems:
            model = need("SGPN", lambda: build_sgpn(generator, d3dfr, bfm), step="loading")
        if problems:
            raise ModelUnavailableError("\n".join(problems))
        detector_root = stage_for_facexlib(config.detector, detector.parent, download)

        def factory(settings: RestoreSettings) -> FaceRestorer:
            return FaceRestorer(model, device=config.device, upscale=settings.upscale, detector=config.detector,
                                detector_rootpath=detector_root, use_parse=settings.use_parse,
                                fidelity=settings.fidelity, allow_download=download,
                                bg_upsampler=build_bg_upsampler("realesrgan" if settings.background else None,
                                                                config.device, outscale=settings.upscale,
                                                                allow_download=download))

        first = factory(RestoreSettings(config.default_upscale))   # the model on its device, the detector loaded
        if config.keep_memory and first.device.type == "cpu":     # a dedicated server process
            keep_freed_memory()
        # one forward now, so that the first user does not wait for it (nor for the compiled generator, which
        # the first start on a machine builds: ~40 s on 2 cores) and concurrent requests never build it twice
        report("warming up the generator (the first start on a machine compiles it: about a minute)")
        first.restore_crops([np.full((first.size, first.size, 3), 0.5, np.float32)], [first.template])
        return factory

    return load


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class RestorerPool:
    """Loads the model once in a background thread, then lends restorers to ``concurrency`` requests at a time.

    Each concurrency slot keeps its own restorers (the face detector keeps state between calls), the few most
    recently used :class:`RestoreSettings`; all share the one loaded SGPN. A failed load is not retried by
    requests: they get its explanation at once.
    """

    def __init__(self, load: ModelLoader, concurrency: int = 1, restorers_per_slot: int = 3):
        self._load = load
        self._factory: RestorerFactory | None = None
        self._error: ModelUnavailableError | None = None
        self._step = "starting"
        self._started = time.monotonic()
        self._done = threading.Event()
        self._slots: queue.Queue[OrderedDict] = queue.Queue()
        for _ in range(concurrency):
            self._slots.put(OrderedDict())
        self._per_slot = restorers_per_slot
        self._thread = threading.Thread(target=self._run, name="sgpn-model-loader", daemon=True)

    def start(self) -> "RestorerPool":
        self._thread.start()
        return self

    def _report(self, step: str) -> None:
        logger.info("model: %s", step)
        self._step = step

    def _run(self) -> None:
        try:
            self._factory = self._load(self._report)
        except ModelUnavailableError as error:
            self._error = error
        except SETUP_ERRORS as error:
            self._error = ModelUnavailableError(explain(error))
        except Exception as error:  # a bug: keep serving the page, and say so there
            logger.exception("loading the model failed")
            self._error = ModelUnavailableError(f"loading failed unexpectedly: {explain(error)}")
        else:
            logger.info("model ready after %.1f s", time.monotonic() - self._started)
        self._done.set()

    @property
    def state(self) -> ModelState:
        if not self._done.is_set():
            return ModelState.LOADING
        return ModelState.FAILED if self._error is not None else ModelState.READY

    def banner(self) -> str:
        """Markdown for the top of the page: loading progress, or why the model is unavailable ('' when ready)."""
        state = self.state
        if state is ModelState.LOADING:
            return (f"⏳ **Loading the model** ({self._step}; {time.monotonic() - self._started:.0f} s). "
                    "You can upload a photo meanwhile; Restore waits for the model.")
        return str(self._error) if state is ModelState.FAILED else ""

    def wait(self, timeout: float | None = None) -> ModelState:
        """Block until loading has finished (or ``timeout`` seconds); return the state."""
        self._done.wait(timeout)
        return self.state

    @contextmanager
    def use(self, settings: RestoreSettings) -> Iterator[FaceRestorer]:
        """A restorer for ``settings``, held exclusively for the ``with`` block (waits for the model to load)."""
        self._done.wait()
        if self._error is not None:
            raise ModelUnavailableError(self._error.reason)
        slot = self._slots.get()
        try:
            if settings not in slot:
                try:
                    slot[settings] = self._factory(settings)
                except FILE_ERRORS + (ImportError,) as error:   # e.g. use_parse's network, Real-ESRGAN
                    raise ModelUnavailableError(explain(error)) from error
                while len(slot) > self._per_slot:
                    slot.popitem(last=False)
            slot.move_to_end(settings)
            yield slot[settings]
        finally:
            self._slots.put(slot)
