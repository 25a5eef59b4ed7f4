"""PSNR and SSIM with BasicSR's conventions (delegated to ``basicsr.metrics``).

Face-restoration papers (GFPGAN, CodeFormer, the SGPN re-evaluations) report both on the RGB
images at 512 with ``crop_border=0`` and ``test_y_channel=False``; those are the defaults here.
"""

from __future__ import annotations

import numpy as np

from ._basicsr import basicsr_metrics


def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """PSNR (dB) between two HWC BGR images in [0, 255]."""
    return float(basicsr_metrics().calculate_psnr(img, img2, crop_border, input_order="HWC",
                                                    test_y_channel=test_y_channel))


def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """SSIM (Gaussian window 11, σ 1.5, averaged over channels) between two HWC BGR images in [0, 255]."""
    return float(basicsr_metrics().calculate_ssim(img, img2, crop_border, input_order="HWC",
                                                    test_y_channel=test_y_channel))
