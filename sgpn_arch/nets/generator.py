"""SGPN generator: shared GPEN-style encoder, 3DMM-aware mapping and AFFB StyleGAN2 decoder.

State-dict layout (``netE.*``, ``netG.*``) matches the official ``FullGenerator_SGPN`` so that
``sgpn.pth`` loads with ``strict=True``; see ``shared/reference/state_dict_sgpn_generator.json``.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from .stylegan2_ops import (LEAKY_GAIN, LEAKY_SLOPE, ConstantInput, ConvLayer, EqualConv2d, EqualLinear,
                            FusedLeakyReLU, ModulatedConv2d, NoiseInjection, PixelNorm, ToRGB, stylegan2_channels)

COEFF_DIM = 257


def _layout(t: torch.Tensor) -> torch.memory_format:
    """Memory format of the feature map ``t``, for the buffers that the inference path fills from it."""
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class SGPNEncoder(nn.Module):
    """1×1 conv at full resolution, then stride-2 blur+conv layers down to 4×4 and a linear code.

    ``forward`` returns ``(code [B, code_dim], features)`` where ``features[r]`` is the map at
    resolution ``r`` (4 … size).
    """

    def __init__(self, size: int, channels: dict[int, int], code_dim: int):
        super().__init__()
        self.log_size = int(math.log2(size))
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        in_ch = channels[size]
        for i in range(1, self.log_size - 1):
            out_ch = channels[2 ** (self.log_size - i)]
            setattr(self, f"ecd{i}", nn.Sequential(ConvLayer(in_ch, out_ch, 3, downsample=True)))
            in_ch = out_ch
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, code_dim, activation=True))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        features = {}
        for i in range(self.log_size - 1):
            x = getattr(self, f"ecd{i}")(x)
            features[x.shape[-1]] = x
        return self.final_linear(x.flatten(1)), features


class StyledConv(nn.Module):
    """Modulated conv, concatenated feature injection, bias + leaky ReLU (the 4×4 layer)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(2 * out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), feature))


class AFFBConv(StyledConv):
    """Adaptive feature fusion block: a learned mask mixes LQ and 3D-render encoder features.

    ``m = sigmoid(conv1x1(cat[o, f_lq, f_3d]))``, ``f = m·f_lq + (1−m)·f_3d``, output
    ``FusedLeakyReLU(cat[o, s·f])`` where ``o`` is the modulated conv output.
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__(in_channels, out_channels, style_dim, upsample)
        self.convs_mask = nn.Sequential(EqualConv2d(3 * out_channels, out_channels, 1, bias=True))

    def forward(self, x: torch.Tensor, style: torch.Tensor, feature_lq: torch.Tensor,
                feature_3d: torch.Tensor) -> torch.Tensor:
        out = self.conv(x, style)
        mask = torch.sigmoid(self.convs_mask(torch.cat([out, feature_lq, feature_3d], dim=1)))
        fused = feature_3d + mask * (feature_lq - feature_3d)
        return self.activate(self.noise(out, fused))

    def forward_inference(self, x: torch.Tensor, style: torch.Tensor, mask_input: torch.Tensor,
                          feature_lq: torch.Tensor, feature_3d: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without autograd, with its element-wise work fused and done in place.

        ``mask_input [B, 3C, H, W]`` holds ``cat[·, f_lq, f_3d]`` (filled once per resolution, shared by
        its two layers); the conv output goes into its first C channels, so nothing is concatenated.
        The activation gain √2 is folded into the conv and the bias (``leaky(z)·√2 = leaky(√2·z)``).
        """
        c = self.conv.out_channels
        out = self.conv(x, style)
        mask_input[:, :c] = out
        mask = self.convs_mask(mask_input).sigmoid_()
        bias = (self.activate.bias * LEAKY_GAIN).view(1, -1, 1, 1)
        result = torch.empty(out.shape[0], 2 * c, *out.shape[2:], dtype=out.dtype, device=out.device,
                             memory_format=_layout(mask_input))
        torch.add(bias[:, :c], out, alpha=LEAKY_GAIN, out=result[:, :c])
        fused = torch.lerp(feature_3d, feature_lq, mask, out=result[:, c:])
        torch.addcmul(bias[:, c:], fused, self.noise.weight * LEAKY_GAIN, out=fused)
        return F.leaky_relu_(result, LEAKY_SLOPE)


def add_synthesis_layers(decoder: nn.Module, size: int, channels: dict[int, int], style_dim: int,
                         conv: type[StyledConv]) -> None:
    """Give ``decoder`` the layers of a StyleGAN2 synthesis network with concatenated features.

    Adds ``input``, ``conv1``, ``to_rgb1`` and, per resolution 8 … ``size``, an upsampling and a plain
    ``conv`` in ``convs`` and a ``ToRGB`` in ``to_rgbs``; concatenation doubles every layer's input width.
    Shared by SGPN's AFFB decoder and GPEN's, whose checkpoints use these names.
    """
    decoder.input = ConstantInput(channels[4])
    decoder.conv1 = StyledConv(channels[4], channels[4], style_dim)
    decoder.to_rgb1 = ToRGB(2 * channels[4], style_dim, upsample=False)
    decoder.convs = nn.ModuleList()
    decoder.to_rgbs = nn.ModuleList()
    in_ch = 2 * channels[4]
    for i in range(3, int(math.log2(size)) + 1):
        out_ch = channels[2 ** i]
        decoder.convs.append(conv(in_ch, out_ch, style_dim, upsample=True))
        decoder.convs.append(conv(2 * out_ch, out_ch, style_dim))
        decoder.to_rgbs.append(ToRGB(2 * out_ch, style_dim))
        in_ch = 2 * out_ch


class SGPNDecoder(nn.Module):
    """StyleGAN2 synthesis network whose every layer takes encoder features (keys ``netG.*``)."""

    def __init__(self, size: int, channels: dict[int, int], style_dim: int, code_dim: int,
                 coeff_dim: int, n_mlp: int):
        super().__init__()
        mlp: list[nn.Module] = [PixelNorm()]
        in_dim = 2 * code_dim + coeff_dim
        for _ in range(n_mlp):
            mlp.append(EqualLinear(in_dim, style_dim, lr_mul=0.01, activation=True))
            in_dim = style_dim
        self.mlp = nn.Sequential(*mlp)
        add_synthesis_layers(self, size, channels, style_dim, AFFBConv)

    def forward(self, latent: torch.Tensor, features_lq: dict[int, torch.Tensor],
                features_3d: dict[int, torch.Tensor]) -> torch.Tensor:
        w = self.mlp(latent)
        out = self.conv1(self.input(latent.shape[0]), w, features_lq[4])
        skip = self.to_rgb1(out, w)
        inference = not torch.is_grad_enabled()
        for i, to_rgb in enumerate(self.to_rgbs):
            res = 2 ** (i + 3)
            f_lq, f_3d = features_lq[res], features_3d[res]
            if inference:
                c = f_lq.shape[1]
                mask_input = torch.empty(f_lq.shape[0], 3 * c, res, res, dtype=f_lq.dtype, device=f_lq.device,
                                         memory_format=_layout(f_lq))
                mask_input[:, c:2 * c], mask_input[:, 2 * c:] = f_lq, f_3d
                out = self.convs[2 * i].forward_inference(out, w, mask_input, f_lq, f_3d)
                out = self.convs[2 * i + 1].forward_inference(out, w, mask_input, f_lq, f_3d)
            else:
                out = self.convs[2 * i](out, w, f_lq, f_3d)
                out = self.convs[2 * i + 1](out, w, f_lq, f_3d)
            skip = to_rgb(out, w, skip)
        return skip


class SGPNGenerator(nn.Module):
    """SGPN generator ``(lq, render, coeffs) -> restored`` (images in [-1, 1], output not clamped).

    Args:
        size: crop size (512 for the official model).
        channel_multiplier: StyleGAN2 channel multiplier (2 official).
        narrow: scales every channel count (1.0 official; < 1 for small CPU configurations).
        style_dim: width of the mapping network / style vectors.
        code_dim: width of each encoder code.
        n_mlp: number of mapping layers.
        coeff_dim: number of 3DMM coefficients fed to the mapping network.
    """

    def __init__(self, size: int = 512, channel_multiplier: int = 2, narrow: float = 1.0,
                 style_dim: int = 512, code_dim: int = 256, n_mlp: int = 3, coeff_dim: int = COEFF_DIM):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"SGPNGenerator size must be a power of two >= 8, got {size}")
        self.size = size
        channels = stylegan2_channels(channel_multiplier, narrow)
        self.netE = SGPNEncoder(size, channels, code_dim)
        self.netG = SGPNDecoder(size, channels, style_dim, code_dim, coeff_dim, n_mlp)

    def forward(self, lq: torch.Tensor, render: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        batch = lq.shape[0]
        pair = torch.cat([lq, render], dim=0)   # both passes in one batch
        cpu_inference = lq.device.type == "cpu" and not torch.is_grad_enabled()
        if cpu_inference:   # channels-last maps: oneDNN's CPU convolutions run without reordering them
            pair = pair.contiguous(memory_format=torch.channels_last)
        codes, features = self.netE(pair)
        features_lq = {r: f[:batch] for r, f in features.items()}
        features_3d = {r: f[batch:] for r, f in features.items()}
        latent = torch.cat([codes[:batch], codes[batch:], coeffs.to(codes.dtype)], dim=1)
        restored = self.netG(latent, features_lq, features_3d)
        return restored.contiguous() if cpu_inference else restored

    @staticmethod
    def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict:
        """Infer the constructor arguments from a state dict in the official layout."""
        try:
            n_convs = 1 + max(int(m.group(1)) for k in state_dict
                              if (m := re.match(r"netG\.convs\.(\d+)\.", k)))
            ch4 = state_dict["netG.input.input"].shape[1]
            mlp_ids = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"netG\.mlp\.(\d+)\.", k))})
            code_dim = state_dict["netE.final_linear.0.weight"].shape[0]
            style_dim = state_dict["netG.conv1.conv.modulation.weight"].shape[1]
            mlp_in = state_dict[f"netG.mlp.{mlp_ids[0]}.weight"].shape[1]
        except (KeyError, ValueError) as err:
            raise ValueError(f"not an SGPN generator state dict (missing {err})") from None
        size = 2 ** (n_convs // 2 + 2)
        narrow = ch4 / 512
        ch64 = state_dict["netG.convs.7.conv.weight"].shape[1] if size >= 64 else 256 * 2 * narrow
        return dict(size=size, channel_multiplier=max(1, round(ch64 / (256 * narrow))), narrow=narrow,
                    style_dim=style_dim, code_dim=code_dim, n_mlp=len(mlp_ids), coeff_dim=mlp_in - 2 * code_dim)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> "SGPNGenerator":
        """Build a generator with the configuration found in ``state_dict`` and load it strictly."""
        model = cls(**cls.config_from_state_dict(state_dict))
        model.load_state_dict(state_dict, strict=True)
        return model
