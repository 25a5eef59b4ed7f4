"""LPIPS (VGG, v0.1) — the perceptual distance face-restoration papers report.

The network is the ``lpips`` package's ``LPIPS(net="vgg")``; both of its weight files come from the
weights zoo instead of torchvision's or lpips' own loaders: the ImageNet VGG-16 backbone
(``vgg16``, torchvision's ``vgg16-397923af.pth``) and the linear calibration layers (``lpips_vgg``,
lpips' ``weights/v0.1/vgg.pth``, which ships inside the ``lpips`` wheel and is used from there when
no other file is given). Inputs are RGB in [-1, 1] (GFPGAN's evaluation normalises with mean 0.5,
std 0.5).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ...zoo.checkpoints import load_state_dict_file, load_strict
from ...zoo.weights import MODEL_ZOO, WeightSpec, register_weight, resolve_weights, weights_dir
from ._cache import cached_network
from ._images import check_pair, default_device, to_tensor

register_weight(WeightSpec("vgg16", "vgg16-397923af.pth", "ImageNet VGG-16 (torchvision; LPIPS backbone)",
                           url="https://download.pytorch.org/models/vgg16-397923af.pth"))
register_weight(WeightSpec("lpips_vgg", "lpips_vgg_v0.1.pth", "LPIPS v0.1 linear layers for VGG",
                           url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"))


def packaged_lpips_weights() -> Path | None:
    """The VGG calibration file shipped in the ``lpips`` wheel, if present."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    return path if path.is_file() else None


def _calibration_weights(weights, allow_download: bool) -> Path:
    """Zoo rules for ``lpips_vgg`` (path → env → cache); the wheel's file before any download."""
    spec = MODEL_ZOO["lpips_vgg"]
    packaged = packaged_lpips_weights()
    if weights is None and packaged is not None and not os.environ.get(spec.env_var):
        cached = weights_dir() / spec.filename
        return cached if cached.is_file() else packaged
    return resolve_weights("lpips_vgg", weights, allow_download)


def lpips_state_dict(model: torch.nn.Module, vgg16: dict, lins: dict) -> dict[str, torch.Tensor]:
    """Full ``LPIPS(net="vgg")`` state dict from a torchvision VGG-16 and an lpips ``vgg.pth`` file.

    torchvision's ``features.<i>.*`` go to the slice that holds layer ``i``; the calibration layers
    are stored twice by lpips (``lin<k>`` and ``lins.<k>``, the same modules).
    """
    state = {k: v for k, v in model.state_dict().items() if k.startswith("scaling_layer.")}
    for slice_name, block in model.net.named_children():
        for name, _ in block.named_parameters():
            state[f"net.{slice_name}.{name}"] = vgg16[f"features.{name}"]
    for k in range(5):
        state[f"lin{k}.model.1.weight"] = state[f"lins.{k}.model.1.weight"] = lins[f"lin{k}.model.1.weight"]
    return state


def build_lpips(weights: str | os.PathLike | None = None, backbone_weights: str | os.PathLike | None = None,
                device: str | torch.device = "cpu", allow_download: bool = True) -> torch.nn.Module:
    """``lpips.LPIPS(net="vgg")`` in eval mode with zoo-resolved weights (``weights``: calibration file)."""
    import lpips

    lins_path = _calibration_weights(weights, allow_download)
    vgg_path = resolve_weights("vgg16", backbone_weights, allow_download)
    with warnings.catch_warnings():  # torchvision's deprecation notice for lpips' `pretrained=` call
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net="vgg", pnet_rand=True, verbose=False)
    state = lpips_state_dict(model, load_state_dict_file(vgg_path), load_state_dict_file(lins_path))
    load_strict(model, state, "LPIPS VGG", f"{vgg_path} + {lins_path}")
    return model.eval().requires_grad_(False).to(device)


@torch.inference_mode()
def calculate_lpips(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, weights=None,
                    backbone_weights=None, device=None) -> float:
    """LPIPS (VGG) between two HWC BGR images in [0, 255]; lower is more similar."""
    check_pair(img, img2)
    device = default_device(device)
    model = cached_network("lpips", lambda: build_lpips(weights, backbone_weights, device),
                           str(weights), str(backbone_weights), str(device))
    if crop_border:
        img, img2 = (x[crop_border:-crop_border, crop_border:-crop_border] for x in (img, img2))
    a, b = (to_tensor(x, device) * 2 - 1 for x in (img, img2))
    return float(model(a, b).item())
