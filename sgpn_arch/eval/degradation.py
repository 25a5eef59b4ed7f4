"""GFPGAN-style blind degradation: blur (isotropic/anisotropic Gaussian) → downsample → noise → JPEG
→ optional colour shift, grey, and GFPGAN's PyTorch colour jitter (brightness/contrast/saturation/hue).

Every range is a parameter so BasicSR YAML files and the benchmark pair builder share one definition.
Images are float32 BGR in [0, 1], ``H×W×3``; the LQ comes back at the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """Normalised (an)isotropic Gaussian kernel of odd ``size``, rotated by ``angle`` radians."""
    r = size // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * x + sin * y, -sin * x + cos * y
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


@dataclass
class BlindDegradation:
    """Random degradation with the ranges of SPEC §6 (defaults: GFPGAN's FFHQ recipe)."""

    blur_kernel_size: int = 41
    blur_sigma: tuple[float, float] = (0.1, 10.0)
    anisotropic_prob: float = 0.5
    downsample_range: tuple[float, float] = (0.8, 8.0)
    noise_range: tuple[float, float] = (0.0, 20.0)
    jpeg_range: tuple[float, float] = (60.0, 100.0)
    color_jitter_prob: float = 0.0
    color_jitter_shift: float = 20.0
    gray_prob: float = 0.0
    color_jitter_pt_prob: float = 0.0
    brightness: tuple[float, float] = (0.5, 1.5)
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.0, 1.5)
    hue: tuple[float, float] = (-0.1, 0.1)

    def __post_init__(self):
        if self.blur_kernel_size % 2 == 0 or self.blur_kernel_size < 1:
            raise ValueError(f"blur_kernel_size must be odd and positive, got {self.blur_kernel_size}")
        for name in ("blur_sigma", "downsample_range", "noise_range", "jpeg_range", "brightness", "contrast",
                     "saturation", "hue"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: lower bound {low} is above upper bound {high}")
        if self.blur_sigma[0] <= 0 or self.downsample_range[0] <= 0:
            raise ValueError("blur_sigma and downsample_range must be positive")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.sample(image, rng)[0]

    def sample(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """``(lq, grey)``: the degraded image and whether it was made grey (GFPGAN's ``gt_gray`` follows it)."""
        h, w = image.shape[:2]
        sx = rng.uniform(*self.blur_sigma)
        sy = rng.uniform(*self.blur_sigma) if rng.random() < self.anisotropic_prob else sx
        kernel = gaussian_kernel(self.blur_kernel_size, sx, sy, rng.uniform(-np.pi, np.pi))
        lq = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
        scale = rng.uniform(*self.downsample_range)
        small = (max(1, int(round(w / scale))), max(1, int(round(h / scale))))
        lq = cv2.resize(lq, small, interpolation=cv2.INTER_LINEAR)
        lq = lq + rng.normal(0, rng.uniform(*self.noise_range) / 255.0, lq.shape).astype(np.float32)
        quality = int(rng.uniform(*self.jpeg_range))
        ok, buf = cv2.imencode(".jpg", (np.clip(lq, 0, 1) * 255).round().astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        lq = cv2.imdecode(buf, cv2.IMREAD_COLOR).astype(np.float32) / 255.0
        lq = cv2.resize(lq, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < self.color_jitter_prob:
            lq = lq + rng.uniform(-self.color_jitter_shift, self.color_jitter_shift, 3).astype(np.float32) / 255.0
        grey = rng.random() < self.gray_prob
        if grey:
            lq = to_gray(lq)
        if rng.random() < self.color_jitter_pt_prob:
            lq = self._color_jitter_pt(lq, rng)
        return np.clip(lq, 0, 1).astype(np.float32), grey

    def _color_jitter_pt(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """GFPGAN's ``color_jitter_pt``: brightness, contrast, saturation and hue in a random order, then
        rounded to 8 bits; torchvision's definitions of the four adjustments."""
        rgb = torch.from_numpy(np.ascontiguousarray(np.clip(image, 0, 1)[..., ::-1])).permute(2, 0, 1)
        adjust = {0: (TF.adjust_brightness, self.brightness), 1: (TF.adjust_contrast, self.contrast),
                  2: (TF.adjust_saturation, self.saturation), 3: (TF.adjust_hue, self.hue)}
        for index in rng.permutation(4):
            function, (low, high) = adjust[int(index)]
            rgb = function(rgb, float(rng.uniform(low, high)))
        rgb = (rgb.clamp(0, 1) * 255).round() / 255
        return rgb.permute(1, 2, 0).numpy()[..., ::-1].astype(np.float32)


def to_gray(image: np.ndarray) -> np.ndarray:
    """A BGR image in [0, 1] as grey in all three channels."""
    return np.repeat(cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)
