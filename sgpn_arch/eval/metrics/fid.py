"""FID against the FFHQ Inception statistics (BasicSR/GFPGAN convention).

Features: the FID Inception-v3 (pytorch-fid's ``pt_inception-2015-12-05`` weights, BasicSR's
``FIDInception*`` blocks), 2048-d pool features of images in [-1, 1] resized bilinearly to 299.
Reference: ``inception_FFHQ_512.pth`` (BasicSR's ``inception_FFHQ_512-f7b384ab.pth``: ``mean`` and
``cov`` of 50k FFHQ 512 faces). Distance: the Fréchet distance (:func:`frechet_distance`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ...pipeline.image_io import list_images
from ...zoo.checkpoints import CheckpointError, load_state_dict_file, load_strict
from ...zoo.weights import WeightSpec, register_weight, resolve_weights
from ._cache import cached_network
from ._images import default_device, to_tensor

register_weight(WeightSpec("inception_fid", "pt_inception-2015-12-05-6726825d.pth",
                           "FID Inception-v3 (pytorch-fid)",
                           url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                               "pt_inception-2015-12-05-6726825d.pth"))
register_weight(WeightSpec("fid_stats_ffhq512", "inception_FFHQ_512.pth",
                           "FFHQ-512 Inception statistics (BasicSR inception_FFHQ_512-f7b384ab.pth, "
                           "from BasicSR's metrics data on Google Drive)"))


class FIDInception(nn.Module):
    """FID Inception-v3 up to the 2048-d average pool. ``forward(x [B,3,H,W] in [-1,1]) -> [B,2048]``."""

    def __init__(self):
        super().__init__()
        import basicsr_plugin.compat  # noqa: F401
        from basicsr.archs import inception as fid_blocks
        from torchvision.models import Inception3

        net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = fid_blocks.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = fid_blocks.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = fid_blocks.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = fid_blocks.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = fid_blocks.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = fid_blocks.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = fid_blocks.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = fid_blocks.FIDInceptionE_1(1280)
        net.Mixed_7c = fid_blocks.FIDInceptionE_2(2048)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        x = n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(nn.functional.max_pool2d(x, 3, 2)))
        x = nn.functional.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return x.mean(dim=(2, 3))

    def load_weights(self, state_dict: dict, source: str) -> "FIDInception":
        """Load pytorch-fid's Inception state dict (keys without the ``net.`` prefix)."""
        load_strict(self.net, state_dict, "FID Inception-v3", source)
        return self


def build_fid_inception(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        allow_download: bool = True) -> FIDInception:
    """FID Inception with zoo-resolved weights, eval mode."""
    path = resolve_weights("inception_fid", weights, allow_download)
    model = FIDInception().load_weights(load_state_dict_file(path), str(path))
    return model.eval().requires_grad_(False).to(device)


def load_fid_stats(stats: str | os.PathLike | None = None, allow_download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [2048], cov [2048,2048])`` of a BasicSR statistics file (zoo name ``fid_stats_ffhq512``)."""
    path = resolve_weights("fid_stats_ffhq512", stats, allow_download)
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or "mean" not in data or "cov" not in data:
        raise CheckpointError(f"{path} is not an Inception statistics file (expected a dict with 'mean' and 'cov')")
    return np.asarray(data["mean"], dtype=np.float64), np.asarray(data["cov"], dtype=np.float64)


def _read_folder(folder: Path) -> list[np.ndarray]:
    import cv2

    files = list_images(folder)
    if not files:
        raise ValueError(f"no images in {folder}")
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files]


@torch.inference_mode()
def inception_features(imgs: Iterable[np.ndarray], model: FIDInception, batch_size: int = 8) -> np.ndarray:
    """``[N,2048]`` FID features of HWC BGR images in [0, 255]."""
    device = next(model.parameters()).device
    feats, batch = [], []
    for img in imgs:
        batch.append(to_tensor(img, device) * 2 - 1)
        if len(batch) == batch_size:
            feats.append(model(torch.cat(batch)).double().cpu())
            batch = []
    if batch:
        feats.append(model(torch.cat(batch)).double().cpu())
    return torch.cat(feats).numpy()


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians: ``|mu1-mu2|² + tr(S1 + S2 - 2·(S1 S2)^½)``.

    ``tr((S1 S2)^½)`` is computed as the sum of the square roots of the eigenvalues of the symmetric
    ``S1^½ S2 S1^½`` (same spectrum as ``S1 S2``): exact for covariance matrices, and seconds instead
    of the minute ``scipy.linalg.sqrtm`` takes at 2048×2048 on a CPU.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def cached_fid_inception(weights=None, device=None) -> FIDInception:
    """The FID Inception for ``weights`` on ``device`` (default: CUDA if available), built once."""
    device = default_device(device)
    return cached_network("fid", lambda: build_fid_inception(weights, device), str(weights), str(device))


def fid_against_ffhq(feats: np.ndarray, stats=None) -> float:
    """FID of ``[N,2048]`` Inception features (N ≥ 2) against the FFHQ-512 statistics."""
    if len(feats) < 2:
        raise ValueError("FID needs at least 2 images")
    real_mean, real_cov = load_fid_stats(stats)
    return frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), real_mean, real_cov)


def calculate_fid_ffhq(imgs: Sequence[np.ndarray] | str | os.PathLike, stats=None, weights=None, device=None,
                       batch_size: int = 8) -> float:
    """FID of HWC BGR images (a list, or a folder of image files) against the FFHQ-512 statistics."""
    if isinstance(imgs, (str, os.PathLike)):
        imgs = _read_folder(Path(imgs))
    if len(imgs) < 2:
        raise ValueError("FID needs at least 2 images")
    load_fid_stats(stats)             # a missing statistics file fails before the features are computed
    return fid_against_ffhq(inception_features(imgs, cached_fid_inception(weights, device), batch_size), stats)
