"""Conversions between BasicSR-style images (HWC BGR, [0, 255]) and network tensors."""

from __future__ import annotations

import numpy as np
import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_tensor(img: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """HWC BGR image in [0, 255] (uint8 or float) → ``[1,3,H,W]`` RGB float in [0, 1]."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {img.shape}")
    rgb = np.ascontiguousarray(img[..., ::-1], dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)


def check_pair(img: np.ndarray, img2: np.ndarray) -> None:
    """Raise ValueError when two images to compare do not have the same shape."""
    if np.shape(img) != np.shape(img2):
        raise ValueError(f"image shapes differ: {np.shape(img)} vs {np.shape(img2)}")
