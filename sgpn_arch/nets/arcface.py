"""ArcFace ResNet-18 identity network (GFPGAN's ``arcface_resnet18.pth`` key layout).

Input: grey faces ``[B,1,128,128]`` in [-1, 1]; output: 512-d identity embeddings. Used by the
identity loss and by the identity-angle (Deg) metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IRBlock(nn.Module):
    """Improved residual block: BN → conv → BN → PReLU → conv(stride) → BN, plus shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, in_planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


class ArcFaceResNet18(nn.Module):
    """ResNet-18-style ArcFace backbone with a 512-d embedding head."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            stage = [IRBlock(in_planes, planes, stride)] + [IRBlock(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            in_planes = planes
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x)).flatten(1)
        return self.bn5(self.fc5(x))


def to_arcface_input(images: torch.Tensor) -> torch.Tensor:
    """RGB ``[B,3,H,W]`` in [-1, 1] → grey ``[B,1,128,128]`` in [-1, 1] (ITU-R 601 luma)."""
    gray = 0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]
    return F.interpolate(gray, size=(128, 128), mode="bilinear", align_corners=False)
