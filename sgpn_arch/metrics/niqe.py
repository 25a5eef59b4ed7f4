"""NIQE (no-reference, lower is better) with BasicSR's implementation and pristine parameters.

Convention of GFPGAN/CodeFormer evaluations: the whole 512 image, Y channel, ``crop_border=0``.
"""

from __future__ import annotations

import numpy as np

from ._basicsr import basicsr_metrics


def calculate_niqe(img: np.ndarray, crop_border: int = 0, convert_to: str = "y") -> float:
    """NIQE of one HWC BGR image in [0, 255]."""
    return float(basicsr_metrics().calculate_niqe(img, crop_border, input_order="HWC", convert_to=convert_to))
