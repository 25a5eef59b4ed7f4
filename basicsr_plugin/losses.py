"""SGPN's hybrid-level losses not provided by BasicSR: VGG perceptual (offline-safe), ArcFace identity,
3DMM coefficient, projected-landmark and photometric shape losses (SPEC §6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg19

from . import compat  # noqa: F401  (before basicsr)
from basicsr.utils.registry import LOSS_REGISTRY  # noqa: E402

from sgpn_arch.nets.arcface import ArcFaceResNet18, to_arcface_input  # noqa: E402
from sgpn_arch.zoo.checkpoints import load_state_dict_file, load_strict  # noqa: E402
from sgpn_arch.zoo.weights import resolve_weights  # noqa: E402

# index of each convolution in torchvision's vgg19().features: its output is taken before the ReLU that
# follows it (BasicSR/GFPGAN's perceptual-loss convention for these layer names)
VGG19_LAYERS = {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _weights(path: str | None, zoo_name: str) -> str:
    """A loss network's weights: the YAML path if given, else the weights zoo (env var, cache, download)."""
    return str(resolve_weights(zoo_name, path))


@LOSS_REGISTRY.register()
class SGPNPerceptualLoss(nn.Module):
    """L1 distance of VGG-19 features (pre-ReLU outputs of the named convs) of images in [-1, 1]; VGG weights
    from the weights zoo (``vgg_path`` or zoo name ``vgg19``)."""

    def __init__(self, layer_weights: dict[str, float], vgg_path: str | None = None, loss_weight: float = 1.0):
        super().__init__()
        unknown = set(layer_weights) - set(VGG19_LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG layers {sorted(unknown)}; use {sorted(VGG19_LAYERS)}")
        vgg = vgg19(weights=None)
        vgg_path = _weights(vgg_path, "vgg19")
        load_strict(vgg, load_state_dict_file(vgg_path), "torchvision VGG-19", vgg_path)
        last = max(VGG19_LAYERS[name] for name in layer_weights)
        self.features = vgg.features[: last + 1].eval().requires_grad_(False)
        self.layer_weights = {VGG19_LAYERS[k]: v for k, v in layer_weights.items()}
        self.loss_weight = loss_weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.layer_weights:
                out[i] = x.clone()     # the next (in-place) ReLU would overwrite it
        return out

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fo, ft = self._features(output), self._features(target.detach())
        return self.loss_weight * sum(w * F.l1_loss(fo[i], ft[i]) for i, w in self.layer_weights.items())


@LOSS_REGISTRY.register()
class IdentityLoss(nn.Module):
    """Mean absolute (L1) distance between ArcFace embeddings of the restored and the HQ face (GFPGAN's
    identity loss, which is also L1)."""

    def __init__(self, arcface_path: str | None = None, loss_weight: float = 1.0):
        super().__init__()
        self.arcface = ArcFaceResNet18()
        arcface_path = _weights(arcface_path, "arcface")
        load_strict(self.arcface, load_state_dict_file(arcface_path), "ArcFace ResNet-18", arcface_path)
        self.arcface.eval().requires_grad_(False)
        self.loss_weight = loss_weight

    def train(self, mode: bool = True):
        super().train(mode)
        self.arcface.eval()   # frozen: BatchNorm statistics stay fixed
        return self

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_emb = self.arcface(to_arcface_input(target))
        return self.loss_weight * F.l1_loss(self.arcface(to_arcface_input(output)), target_emb)


@LOSS_REGISTRY.register()
class CoefficientLoss(nn.Module):
    """Weighted L2 between 3DMM coefficients of the LQ crop and of the HQ crop (per coefficient group)."""

    GROUPS = {"id": slice(0, 80), "exp": slice(80, 144), "tex": slice(144, 224), "angles": slice(224, 227),
              "gamma": slice(227, 254), "trans": slice(254, 257)}

    def __init__(self, group_weights: dict[str, float] | None = None, loss_weight: float = 1.0):
        super().__init__()
        group_weights = group_weights or {}
        unknown = set(group_weights) - set(self.GROUPS)
        if unknown:
            raise ValueError(f"unknown coefficient groups {sorted(unknown)}; use {sorted(self.GROUPS)}")
        weights = torch.ones(257)
        for name, w in group_weights.items():
            weights[self.GROUPS[name]] = w
        self.register_buffer("weights", weights)
        self.loss_weight = loss_weight

    def forward(self, coeffs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * ((coeffs - target.detach()) ** 2 * self.weights).mean()


@LOSS_REGISTRY.register()
class LandmarkLoss(nn.Module):
    """Mean distance of the 68 projected 3DMM landmarks to their targets, in units of the crop size."""

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, landmarks: torch.Tensor, target: torch.Tensor, crop_size: int) -> torch.Tensor:
        return self.loss_weight * (landmarks - target.detach()).norm(dim=-1).mean() / crop_size


@LOSS_REGISTRY.register()
class PhotometricLoss(nn.Module):
    """L1 between the 3D colour render and the HQ face inside the render's coverage mask."""

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, render: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        diff = (render - target).abs() * mask
        return self.loss_weight * diff.sum() / (mask.sum() * 3).clamp_min(1.0)
