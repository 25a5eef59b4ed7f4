"""Pure-PyTorch StyleGAN2 building blocks (no compiled ops).

Parameter and buffer names follow the layout of the official SGPN / GPEN / rosinality checkpoints so
that those files load with ``strict=True``. FIR filtering ("upfirdn2d") is a depthwise convolution and
the fused bias + leaky ReLU is two plain ops, so the same code runs on CPU, CUDA and MPS.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_BLUR_KERNEL = (1, 3, 3, 1)
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """2-D separable FIR kernel from 1-D taps, normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None] if k.ndim == 1 else k
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` (true convolution), downsample.

    Same semantics as StyleGAN2's ``upfirdn2d`` with equal factors and padding on both axes.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    pad0, pad1 = pad
    x = F.pad(x, (max(pad0, 0), max(pad1, 0), max(pad0, 0), max(pad1, 0)))
    if pad0 < 0 or pad1 < 0:
        x = x[:, :, max(-pad0, 0): x.shape[2] - max(-pad1, 0), max(-pad0, 0): x.shape[3] - max(-pad1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` with ``bias`` broadcast over channel dim 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), LEAKY_SLOPE) * LEAKY_GAIN


class FusedLeakyReLU(nn.Module):
    """Per-channel bias followed by a scaled leaky ReLU (key: ``bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass filter with padding (buffer: ``kernel``)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR upsampling used on the ToRGB skip path (buffer: ``kernel``)."""

    def __init__(self, taps: Sequence[float] = DEFAULT_BLUR_KERNEL, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class PixelNorm(nn.Module):
    """Normalise each feature vector to unit RMS."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weights stored N(0,1), scaled at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution (weight ``[1, out, in, k, k]``, key ``modulation``).

    Implemented by scaling the input channels by the style and the output channels by the
    demodulation factor around one shared convolution, which is mathematically identical to the
    per-sample modulated weights of StyleGAN2 and keeps batches in one dense conv.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            return F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        return F.conv2d(x, weight, padding=self.padding)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)                                   # [B, in]
        weight = self.weight[0] * self.scale                         # [out, in, k, k]
        if self.demodulate:
            w2 = weight.pow(2).sum(dim=(2, 3))                       # [out, in]
            demod = torch.rsqrt(s.pow(2) @ w2.t() + 1e-8)            # [B, out]
        else:
            demod = torch.ones(s.shape[0], self.out_channels, dtype=s.dtype, device=s.device)
        if x.shape[0] == 1:
            # one sample: folding style and demodulation into the weights is cheaper than
            # scaling the (much larger) activations
            out = self._conv(x, weight * s[0][None, :, None, None] * demod[0][:, None, None, None])
        else:
            out = self._conv(x * s[:, :, None, None], weight) * demod[:, :, None, None]
        if self.upsample:
            out = self.blur(out)
        return out


class ConstantInput(nn.Module):
    """Learned constant 4×4 input of the synthesis network (key ``input``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class NoiseInjection(nn.Module):
    """SGPN/GPEN noise injection by concatenation: ``cat([x, weight * feature])`` (key ``weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.weight * feature], dim=1)


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB, added to the upsampled skip image."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d → [FusedLeakyReLU], as an indexed Sequential (keys ``0``, ``1``, ``2``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self[-1], FusedLeakyReLU) or torch.is_grad_enabled():
            return super().forward(x)
        *blur, conv, activate = self
        # inference: ``leaky(z + b)·√2 = leaky(√2·z + √2·b)``, so the conv adds the scaled bias and the
        # activation runs in place — one pass over the output instead of three
        for layer in blur:
            x = layer(x)
        out = F.conv2d(x, conv.weight * (conv.scale * LEAKY_GAIN), activate.bias * LEAKY_GAIN,
                       stride=conv.stride, padding=conv.padding)
        return F.leaky_relu_(out, LEAKY_SLOPE)


def stylegan2_channels(channel_multiplier: int = 2, narrow: float = 1.0) -> dict[int, int]:
    """Channel count per resolution of the StyleGAN2 family (GPEN's ``narrow`` scales all)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: max(1, int(ch * narrow)) for res, ch in base.items()}
