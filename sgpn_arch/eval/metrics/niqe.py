"""NIQE (no-reference, lower is better) with BasicSR's implementation and pristine parameters.

Convention of GFPGAN/CodeFormer evaluations: the whole 512 image, Y channel, ``crop_border=0``.
BasicSR's NIQE fits a Gaussian to 96-px blocks at two scales, which needs at least 192 px per side: smaller
images (e.g. a 128-px training configuration) are first enlarged bicubically to 192 px, so their values
are comparable with each other but not with NIQE at 512.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._basicsr import basicsr_metrics

NIQE_MIN_SIZE = 192     # two 96-px blocks: the smallest image both NIQE scales have blocks for


def calculate_niqe(img: np.ndarray, crop_border: int = 0, convert_to: str = "y") -> float:
    """NIQE of one HWC BGR image in [0, 255] (images under 192 px per side enlarged to 192 first)."""
    short = min(img.shape[:2]) - 2 * crop_border
    if short < NIQE_MIN_SIZE:
        scale = NIQE_MIN_SIZE / short
        size = (int(np.ceil(img.shape[1] * scale)), int(np.ceil(img.shape[0] * scale)))
        img = np.clip(cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_CUBIC), 0, 255)
        crop_border = int(np.ceil(crop_border * scale))
    return float(basicsr_metrics().calculate_niqe(img, crop_border, input_order="HWC", convert_to=convert_to))
