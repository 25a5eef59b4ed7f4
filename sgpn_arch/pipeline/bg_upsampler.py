"""Background upsampling of whole photos with Real-ESRGAN (optional: ``pip install "sgpn-restore[realesrgan]"``).

:func:`build_bg_upsampler` returns the callable :class:`~sgpn_arch.pipeline.restorer.FaceRestorer` takes as
``bg_upsampler``: BGR float image in [0, 1] → the same image ``outscale`` times larger. The faces are
restored by SGPN and pasted on top; only the rest of the photo goes through Real-ESRGAN.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
from typing import Callable

import numpy as np
import torch

from ..zoo.weights import WeightSpec, register_weight, resolve_weights

logger = logging.getLogger(__name__)

BG_UPSAMPLERS = ("none", "realesrgan")
INSTALL_HINT = 'pip install "sgpn-restore[realesrgan]" (the realesrgan package)'

# Real-ESRGAN's own release asset (github.com/xinntao/Real-ESRGAN, release v0.2.1); no reference sha256 known here.
REALESRGAN_X2PLUS = register_weight(WeightSpec(
    "realesrgan_x2plus", "RealESRGAN_x2plus.pth", "Real-ESRGAN x2plus RRDBNet (background upsampling)",
    url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth"))


def check_bg_upsampler(name: str | None) -> None:
    """Raise ``ValueError`` for an unknown name and ``ImportError`` when its package is not installed."""
    if name in (None, "none"):
        return
    if name not in BG_UPSAMPLERS:
        raise ValueError(f"unknown background upsampler {name!r}; choose one of {', '.join(BG_UPSAMPLERS)}")
    if importlib.util.find_spec("realesrgan") is None:
        raise ImportError(f"the {name} background upsampler needs Real-ESRGAN: {INSTALL_HINT}")


def build_bg_upsampler(name: str | None, device: str | torch.device = "auto", *, outscale: int = 2,
                       weights: str | os.PathLike | None = None, allow_download: bool = True, tile: int = 400,
                       half: bool | None = None) -> Callable[[np.ndarray], np.ndarray] | None:
    """The background upsampler ``name`` (``"realesrgan"``; ``"none"``/None → None) as a callable.

    ``outscale``: output size factor (the restorer's ``upscale``); Real-ESRGAN x2plus upsamples ×2 and the
    result is resized (Lanczos) to ``outscale`` when that differs. ``weights``: RealESRGAN_x2plus.pth
    (default: the weights zoo, ``SGPN_WEIGHTS_REALESRGAN_X2PLUS``). ``tile``: tile side in pixels (0: whole
    image at once). ``half``: float16 (default: on CUDA only).
    """
    check_bg_upsampler(name)
    if name in (None, "none"):
        return None
    import basicsr_plugin.compat  # noqa: F401  (must run before realesrgan imports basicsr)
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan import RealESRGANer

    from ..zoo.checkpoints import check_layout, load_state_dict_file
    from .restorer import pick_device

    path = resolve_weights(REALESRGAN_X2PLUS.name, weights, allow_download)
    check_layout(load_state_dict_file(path), "realesrgan", "the Real-ESRGAN x2plus network", str(path))
    device = pick_device(device)
    if device.type == "cpu":
        logger.warning("Real-ESRGAN background upsampling on the CPU is slow (seconds per megapixel)")
    network = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
    upsampler = RealESRGANer(scale=2, model_path=str(path), model=network, tile=tile, tile_pad=10, pre_pad=0,
                             half=device.type == "cuda" if half is None else half, device=device)
    return RealESRGANBackground(upsampler, outscale)


class RealESRGANBackground:
    """``FaceRestorer.bg_upsampler``: BGR float [0, 1] → ×``outscale`` BGR float32 through Real-ESRGAN (8-bit)."""

    def __init__(self, upsampler, outscale: int):
        self.upsampler, self.outscale = upsampler, outscale

    def __call__(self, image01: np.ndarray) -> np.ndarray:
        bgr8 = np.clip(image01 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        # RealESRGANer prints one line per tile: keep them off the command's output
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            output, _ = self.upsampler.enhance(bgr8, outscale=self.outscale)
        return output.astype(np.float32) / 255.0
