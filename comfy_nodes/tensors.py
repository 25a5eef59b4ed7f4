"""Conversions between ComfyUI tensors and the pipeline's numpy images.

ComfyUI: ``IMAGE`` float32 ``[B,H,W,C]`` RGB in 0..1 on the CPU (``C`` = 3, or 4 with alpha from nodes that
keep it), ``MASK`` float32 ``[B,H,W]`` in 0..1. Pipeline (``sgpn_arch.pipeline.restorer``): one numpy image at a time,
BGR(A) (OpenCV order); it restores the colour and carries alpha through, and so do these conversions.
"""

from __future__ import annotations

import numpy as np
import torch


def image_batch_to_bgr(images: torch.Tensor) -> list[np.ndarray]:
    """Split an ``IMAGE`` batch into float32 ``HxWx3`` (or ``x4``) BGR(A) arrays in 0..1."""
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise ValueError(f"expected a ComfyUI IMAGE batch [B,H,W,3] or [B,H,W,4], got shape {list(images.shape)}")
    arrays = images.detach().to("cpu", torch.float32).clamp(0, 1).numpy()
    order = [2, 1, 0, 3][: arrays.shape[-1]]
    return [np.ascontiguousarray(image[..., order]) for image in arrays]


def bgr_to_image_batch(images: list[np.ndarray]) -> torch.Tensor:
    """Stack BGR(A) arrays (uint8, uint16 or float in 0..1, all the same size) into an RGB(A) ``IMAGE`` batch."""
    return torch.from_numpy(np.stack([_bgr_to_rgb_float(image) for image in images]))


def black_image_batch(size: int) -> torch.Tensor:
    """One black ``size``² image (``[1,size,size,3]``): what image outputs give when there is nothing to show,
    since ComfyUI's Preview/Save nodes fail on an empty batch."""
    return torch.zeros((1, size, size, 3), dtype=torch.float32)


def masks_to_batch(masks: list[np.ndarray]) -> torch.Tensor:
    """Stack ``HxW`` float masks into a ``MASK`` batch in 0..1."""
    return torch.from_numpy(np.stack([np.clip(mask.astype(np.float32), 0, 1) for mask in masks]))


def _bgr_to_rgb_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        image = image.astype(np.float32) / 65535.0
    else:
        image = np.clip(image.astype(np.float32), 0, 1)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    order = [2, 1, 0, 3][: image.shape[-1]]
    return np.ascontiguousarray(image[..., order])
