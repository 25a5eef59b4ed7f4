"""D3DFR coefficient regressor: ResNet-50 with seven 1×1 heads → 257 3DMM coefficients.

Keys (``backbone.*``, ``final_layers.*``) match the official ``ReconNetWrapper`` so that
``d3dfr_finetune_ours.pth`` loads with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet50

# identity, expression, albedo, Euler angles, SH lighting, translation xy, translation z
HEAD_SIZES = (80, 64, 80, 3, 27, 2, 1)
INPUT_SIZE = 224


class ReconNet(nn.Module):
    """``x [B,3,224,224]`` RGB in [0, 1] → coefficients ``[B,257]``.

    The heads start at zero (as in Deep3DFaceRecon), so an untrained network predicts the mean face.
    """

    def __init__(self):
        super().__init__()
        self.backbone = resnet50(weights=None)
        self.backbone.fc = nn.Identity()   # parameter-free: keeps the official key set
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, n, 1) for n in HEAD_SIZES)
        for head in self.final_layers:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[:, :, None, None]
        return torch.cat([head(features) for head in self.final_layers], dim=1).flatten(1)
