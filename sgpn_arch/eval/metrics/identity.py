"""Identity angle "Deg": the angle between ArcFace embeddings of restored and ground-truth faces.

GFPGAN's ArcFace ResNet-18 (``arcface_resnet18.pth``, the identity-loss network) on the grey face
resized to 128; ``deg = degrees(arccos(cos_sim(e1, e2)))``, 0 for the same identity, lower is better.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from ...nets.arcface import ArcFaceResNet18, to_arcface_input
from ...zoo.checkpoints import load_state_dict_file, load_strict
from ...zoo.weights import resolve_weights
from ._cache import cached_network
from ._images import check_pair, default_device, to_tensor


def build_arcface(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                  allow_download: bool = True) -> ArcFaceResNet18:
    """ArcFace ResNet-18 with zoo-resolved weights (zoo name ``arcface``), eval mode."""
    path = resolve_weights("arcface", weights, allow_download)
    model = ArcFaceResNet18()
    load_strict(model, load_state_dict_file(path), "ArcFace ResNet-18", str(path))
    return model.eval().requires_grad_(False).to(device)


def embedding_angle(e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """Per-row angle in degrees between two batches of embeddings ``[B,D]``."""
    cos = F.cosine_similarity(e1.double(), e2.double(), dim=1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


@torch.inference_mode()
def calculate_identity_deg(img: np.ndarray, img2: np.ndarray, weights=None, device=None) -> float:
    """Identity angle (degrees) between two aligned HWC BGR faces in [0, 255]."""
    check_pair(img, img2)
    device = default_device(device)
    model = cached_network("arcface", lambda: build_arcface(weights, device), str(weights), str(device))
    batch = torch.cat([to_tensor(x, device) * 2 - 1 for x in (img, img2)])
    emb = model(to_arcface_input(batch))
    angle = float(embedding_angle(emb[:1], emb[1:]).item())
    return angle if math.isfinite(angle) else 90.0
