"""User-fixable problems shown in ComfyUI's error dialog as one message, without a chain of tracebacks."""

from __future__ import annotations

from contextlib import contextmanager

from .sgpn_arch.face3d.bfm import BFMError
from .sgpn_arch.zoo.checkpoints import CheckpointError
from .sgpn_arch.zoo.weights import WeightsError

# what users cause: missing or wrong files, options the pipeline refuses, a mode not available yet
USER_ERRORS = (BFMError, CheckpointError, WeightsError, FileNotFoundError, ValueError, NotImplementedError)


class SGPNNodeError(Exception):
    """What is wrong and how to fix it; ComfyUI shows the message and keeps running."""


@contextmanager
def user_errors(what: str):
    """Re-raise the pipeline's user errors as one :class:`SGPNNodeError` ``"<what>: <message>"``."""
    try:
        yield
    except SGPNNodeError:
        raise
    except USER_ERRORS as err:
        raise SGPNNodeError(f"{what}: {err}") from None
