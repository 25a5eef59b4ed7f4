"""Landmark distance "LMD": mean distance (pixels at 512) between the landmarks of two faces.

Landmark network: facexlib's AWing FAN (4 hourglasses, 98 WFLW landmarks, ``alignment_WFLW_4HG.pth``),
the detector the GFPGAN-family evaluation toolkits use for LMD. It sees the face resized to 256 as
RGB in [0, 1] and returns 64×64 heatmaps; each landmark is the heatmap arg-max moved a quarter pixel
towards the higher neighbour, plus 0.5, scaled to the image (facexlib's decoding). LMD is computed in
the coordinates of the image resized to 512 so numbers are comparable across crop sizes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ...zoo.checkpoints import load_state_dict_file, load_strict
from ...zoo.weights import WeightSpec, register_weight, resolve_weights
from ._cache import cached_network
from ._images import check_pair, default_device, to_tensor

register_weight(WeightSpec("awing_fan", "alignment_WFLW_4HG.pth", "facexlib AWing FAN 98-landmark detector (LMD metric)",
                           url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth"))

LMD_SIZE = 512
FAN_INPUT = 256


def build_fan(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
              allow_download: bool = True) -> nn.Module:
    """facexlib ``FAN(num_modules=4, num_landmarks=98)`` with zoo-resolved weights, eval mode."""
    from facexlib.alignment.awing_arch import FAN

    path = resolve_weights("awing_fan", weights, allow_download)
    model = FAN(num_modules=4, num_landmarks=98, device=str(device))
    load_strict(model, load_state_dict_file(path), "AWing FAN (alignment_WFLW_4HG)", str(path))
    return model.eval().requires_grad_(False).to(device)


def decode_heatmaps(heatmaps: torch.Tensor, image_size: int) -> torch.Tensor:
    """``[B,N,H,W]`` heatmaps → ``[B,N,2]`` (x, y) in pixels of an ``image_size`` square image."""
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, n, h * w)
    idx = flat.argmax(dim=2)
    x, y = idx % w, idx // w
    padded = nn.functional.pad(heatmaps, (1, 1, 1, 1), mode="replicate").reshape(b * n, h + 2, w + 2)
    rows, xs, ys = torch.arange(b * n, device=heatmaps.device), x.flatten() + 1, y.flatten() + 1
    dx = torch.sign(padded[rows, ys, xs + 1] - padded[rows, ys, xs - 1]).reshape(b, n)
    dy = torch.sign(padded[rows, ys + 1, xs] - padded[rows, ys - 1, xs]).reshape(b, n)
    points = torch.stack([x + 0.25 * dx + 0.5, y + 0.25 * dy + 0.5], dim=2).double()
    return points * torch.tensor([image_size / w, image_size / h], dtype=points.dtype, device=points.device)


@torch.inference_mode()
def predict_landmarks(model: nn.Module, img: np.ndarray) -> torch.Tensor:
    """``[L,2]`` landmarks of one HWC BGR face in [0, 255], in pixels of the face resized to 512."""
    device = next(model.parameters()).device
    x = nn.functional.interpolate(to_tensor(img, device), size=(FAN_INPUT, FAN_INPUT), mode="bilinear",
                                  align_corners=False)
    heatmaps = model(x)[0][-1]
    n_points = getattr(model, "num_landmarks", heatmaps.shape[1])
    return decode_heatmaps(heatmaps[:, :n_points].float(), LMD_SIZE)[0].cpu()


def landmark_distance(points: torch.Tensor, points2: torch.Tensor) -> float:
    """Mean Euclidean distance between corresponding landmarks ``[L,2]``."""
    return float((points - points2).norm(dim=-1).mean())


def calculate_lmd(img: np.ndarray, img2: np.ndarray, weights=None, device=None) -> float:
    """LMD (pixels at 512) between two aligned HWC BGR faces in [0, 255]."""
    check_pair(img, img2)
    device = default_device(device)
    model = cached_network("fan", lambda: build_fan(weights, device), str(weights), str(device))
    return landmark_distance(predict_landmarks(model, img), predict_landmarks(model, img2))
