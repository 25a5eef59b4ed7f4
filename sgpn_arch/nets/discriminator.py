"""StyleGAN2 discriminator (rosinality layout) used to train SGPN; keys match the official ``Discriminator(512)``."""

from __future__ import annotations

import math

import torch
from torch import nn

from .stylegan2_ops import ConvLayer, EqualLinear, stylegan2_channels


class ResBlock(nn.Module):
    """Two 3×3 convs (the second downsampling) plus a 1×1 downsampling skip, averaged by 1/√2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class SGPNDiscriminator(nn.Module):
    """Image → realness logit ``[B, 1]``, with a minibatch standard-deviation feature."""

    def __init__(self, size: int = 512, channel_multiplier: int = 2, narrow: float = 1.0,
                 stddev_group: int = 4):
        super().__init__()
        channels = stylegan2_channels(channel_multiplier, narrow)
        log_size = int(math.log2(size))
        convs: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        in_ch = channels[size]
        for i in range(log_size, 2, -1):
            out_ch = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.final_conv = ConvLayer(in_ch + 1, channels[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, channels[4], activation=True),
                                          EqualLinear(channels[4], 1))

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append the mean per-group feature standard deviation as one extra channel."""
        b, c, h, w = x.shape
        group = max(g for g in range(1, min(b, self.stddev_group) + 1) if b % g == 0)
        y = x.view(group, -1, 1, c, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean(dim=(2, 3, 4), keepdim=True).squeeze(2)
        return torch.cat([x, y.repeat(group, 1, h, w)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.final_conv(self.minibatch_stddev(self.convs(x)))
        return self.final_linear(out.flatten(1))
