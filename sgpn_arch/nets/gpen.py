"""GPEN-BFR-512 generator (Yang et al., CVPR 2021) in pure PyTorch, as a benchmark peer of SGPN.

Re-implements ``FullGenerator(512, 512, 8, channel_multiplier=2, narrow=1, isconcat=True)`` of
yangxy/GPEN ``face_model/gpen_model.py`` so that the released ``GPEN-BFR-512.pth`` (a plain state
dict, loaded there with the default ``strict=True`` in ``face_model/face_gan.py``) loads key for key.
Layout facts of that file, for ``size=512`` (163 entries, 71.0 M parameters):

* encoder at the top level: ``ecd0.0.{0.weight [64,3,1,1], 1.bias [64]}`` (1×1 conv at 512 px), then
  ``ecd1`` … ``ecd7``, each ``ecdN.0.{0.kernel [4,4], 1.weight [C,Cin,3,3], 2.bias [C]}`` (blur buffer,
  stride-2 conv without bias, fused leaky-ReLU bias) down to 4×4 px with C = 128, 256, 512, 512, 512,
  512, 512; ``final_linear.0.{weight [512,8192], bias [512]}`` (leaky-ReLU).
* ``generator.style.1`` … ``style.8`` ``{weight [512,512], bias [512]}`` (``style.0`` is PixelNorm;
  lr_mul 0.01); ``generator.input.input [1,512,4,4]``.
* ``generator.conv1`` and ``generator.convs.0`` … ``convs.13``: ``conv.weight [1,C,Cin,3,3]``,
  ``conv.modulation.{weight [Cin,512], bias [Cin]}``, ``noise.weight [1]``, ``activate.bias [2C]``;
  the even (upsampling) ``convs`` also hold ``conv.blur.kernel [4,4]``. ``Cin`` is twice the previous
  layer's width because the "noise" is concatenated (``isconcat``): ``cat([x, weight * feature])``.
* ``generator.to_rgb1`` and ``generator.to_rgbs.0`` … ``to_rgbs.6``: ``conv.weight [1,3,2C,1,1]``,
  ``conv.modulation.*``, ``bias [1,3,1,1]``; ``to_rgbs.*`` also hold ``upsample.kernel [4,4]``.
* No ``noises.*`` buffers and no ``upsamples.*`` entries (that ModuleList is empty); blur kernels are
  persistent buffers and so are part of the file.

The concatenated "noise" of each decoder layer at resolution r is the encoder feature map at r (both
convolutions of a resolution use the same map), and one style code ``w = style(final_linear(...))``
drives every layer. The official forward returns ``(image, latent)``; here :meth:`GPENGenerator.forward`
returns the image (RGB in [-1, 1], not clamped) and :meth:`GPENGenerator.encode` gives ``w``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..zoo.checkpoints import load_state_dict_file, load_strict
from .generator import SGPNEncoder, StyledConv, add_synthesis_layers
from .stylegan2_ops import EqualLinear, PixelNorm, stylegan2_channels


class GPENDecoder(nn.Module):
    """StyleGAN2 synthesis network with concatenated encoder features (keys ``generator.*``)."""

    def __init__(self, size: int, channels: dict[int, int], style_dim: int, n_mlp: int, lr_mlp: float = 0.01):
        super().__init__()
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                                                  for _ in range(n_mlp)])
        add_synthesis_layers(self, size, channels, style_dim, StyledConv)

    def forward(self, w: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
        out = self.conv1(self.input(w.shape[0]), w, features[4])
        skip = self.to_rgb1(out, w)
        for i, to_rgb in enumerate(self.to_rgbs):
            feature = features[2 ** (i + 3)]
            out = self.convs[2 * i](out, w, feature)
            out = self.convs[2 * i + 1](out, w, feature)
            skip = to_rgb(out, w, skip)
        return skip


class GPENGenerator(SGPNEncoder):
    """GPEN ``FullGenerator``: the GPEN encoder (which SGPN shares) plus ``generator``, a GAN-prior decoder.

    Args:
        size: input/output size (512 for GPEN-BFR-512).
        style_dim: width of the code and of the mapping network.
        n_mlp: number of mapping layers.
        channel_multiplier: StyleGAN2 channel multiplier.
        narrow: scales every channel count (1 for the released model).
    """

    def __init__(self, size: int = 512, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1.0):
        if size < 8 or size & (size - 1):
            raise ValueError(f"GPENGenerator size must be a power of two >= 8, got {size}")
        channels = stylegan2_channels(channel_multiplier, narrow)
        super().__init__(size, channels, style_dim)
        self.size = size
        self.generator = GPENDecoder(size, channels, style_dim, n_mlp)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """``(w [B, style_dim], features)``: the style code (GPEN's latent) and the encoder maps by resolution."""
        code, features = super().forward(x)
        return self.generator.style(code), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``x [B,3,S,S]`` (RGB in [-1, 1]); returns ``[B,3,S,S]``, not clamped."""
        return self.generator(*self.encode(x))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **config) -> "GPENGenerator":
        """Build with ``config`` (default: BFR-512) and load ``path`` strictly.

        Raises :class:`~sgpn_arch.zoo.checkpoints.CheckpointError` naming missing/unexpected keys.
        """
        model = cls(**config)
        load_strict(model, load_state_dict_file(path), "GPEN generator", str(path))
        return model


def build_gpen_bfr512(weights: str | os.PathLike | None = None) -> GPENGenerator:
    """GPEN-BFR-512 in eval mode: random init with ``weights=None``, else the checkpoint at ``weights``."""
    model = GPENGenerator() if weights is None else GPENGenerator.from_checkpoint(weights)
    return model.eval()
