"""The 512 training recipe's building blocks (issue 20): pretrained decoder, pretrain files, data seeding,
option checking, test-time metrics, checkpoints, GFPGAN option parity."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sgpn_arch.checkpoints import CheckpointError
from sgpn_arch.decoder_init import load_pretrained_decoder
from sgpn_arch.generator import SGPNGenerator
from sgpn_arch.gpen import GPENGenerator
from sgpn_arch.stylegan2_ops import ConstantInput, FusedLeakyReLU, ModulatedConv2d, ToRGB, stylegan2_channels

SMALL = dict(size=32, channel_multiplier=2, narrow=0.125, style_dim=16)


class _AdditiveNoise(nn.Module):
    """rosinality's NoiseInjection (``image + weight · noise``), here with the noise map given."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class _PlainStyledConv(nn.Module):
    def __init__(self, cin, cout, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample=upsample)
        self.noise = _AdditiveNoise()
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x, w, noise):
        return self.activate(self.noise(self.conv(x, w), noise))


class PlainStyleGAN2Synthesis(nn.Module):
    """A plain StyleGAN2 synthesis network with rosinality's module names (keys ``input.input``, ``conv1.*``,
    ``convs.N.*``, ``to_rgb1.*``, ``to_rgbs.N.*``, mapping ``style.1..n``): the reference for the mapping."""

    def __init__(self, size, channel_multiplier, narrow, style_dim, n_mlp=2):
        super().__init__()
        ch = stylegan2_channels(channel_multiplier, narrow)
        self.style = nn.Sequential(nn.Identity(), *[nn.Linear(style_dim, style_dim) for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = _PlainStyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        cin = ch[4]
        for i in range(3, int(math.log2(size)) + 1):
            self.convs.append(_PlainStyledConv(cin, ch[2 ** i], style_dim, upsample=True))
            self.convs.append(_PlainStyledConv(ch[2 ** i], ch[2 ** i], style_dim))
            self.to_rgbs.append(ToRGB(ch[2 ** i], style_dim))
            cin = ch[2 ** i]

    def forward(self, w):
        out = self.conv1(self.input(w.shape[0]), w, torch.randn(w.shape[0], 1, 4, 4))
        skip = self.to_rgb1(out, w)
        for i, to_rgb in enumerate(self.to_rgbs):
            res = 2 ** (i + 3)
            out = self.convs[2 * i](out, w, torch.randn(w.shape[0], 1, res, res))
            out = self.convs[2 * i + 1](out, w, torch.randn(w.shape[0], 1, res, res))
            skip = to_rgb(out, w, skip)
        return skip


def _randomise_(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if "bias" in name or "noise" in name else 1.0))


def _synthesis(generator: SGPNGenerator, w: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
    """SGPN's decoder driven by ``w`` directly (mapping skipped), with the same features for LQ and 3D."""
    decoder = generator.netG
    mlp, decoder.mlp = decoder.mlp, nn.Identity()
    try:
        return decoder(w, features, features)
    finally:
        decoder.mlp = mlp


def _features(generator: SGPNGenerator, seed: int) -> dict[int, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    channels = stylegan2_channels(2, SMALL["narrow"])
    return {r: torch.randn(2, channels[r], r, r, generator=gen) for r in (4, 8, 16, 32)}


def _to_basicsr_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """rosinality names -> BasicSR ``StyleGAN2Generator`` names (facts of basicsr/archs/stylegan2_arch.py)."""
    out = {}
    for key, value in state.items():
        key = key.replace("input.input", "constant_input.weight").replace("conv1.noise.weight", "conv1.weight")
        key = key.replace("style.", "style_mlp.") if key.startswith("style.") else key
        key = key.replace("conv1.", "style_conv1.") if key.startswith("conv1.") else key
        key = "style_" + key if key.startswith("convs.") else key
        key = key.replace(".noise.weight", ".weight").replace(".conv.", ".modulated_conv.")
        out[key] = value
    return out


def _to_clean(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BasicSR names -> ``StyleGAN2GeneratorClean`` tensors (the scalings of GFPGAN's conversion script,
    upsampling kernels rotated as the clean model's bilinear upsampling needs)."""
    out = {}
    for key, value in state.items():
        if key.endswith("modulation.weight"):
            value = value / math.sqrt(value.shape[1])
        elif key.endswith("modulated_conv.weight"):
            value = value / math.sqrt(value[0, 0].numel())
            if key.startswith("style_convs.") and int(key.split(".")[1]) % 2 == 0:
                value = value.flip(-1, -2)
        elif key.endswith("activate.bias"):
            key, value = key.replace("activate.bias", "bias"), (value * math.sqrt(2)).view(1, -1, 1, 1)
        out["stylegan_decoder." + key] = value
    return out


def test_pretrained_decoder_in_every_supported_layout(tmp_path):
    """Issue 20 item 1: GPEN, rosinality, BasicSR and Clean StyleGAN2 generators start SGPN's decoder."""
    torch.manual_seed(0)
    w = torch.randn(2, SMALL["style_dim"])
    sgpn_config = dict(SMALL, code_dim=8, n_mlp=2)

    # GPEN: the concatenated layout; same features -> the same image as GPEN's own decoder
    gpen = GPENGenerator(size=32, style_dim=16, n_mlp=2, channel_multiplier=2, narrow=0.125)
    _randomise_(gpen, 1)
    torch.save(gpen.state_dict(), tmp_path / "gpen.pth")
    sgpn = SGPNGenerator(**sgpn_config)
    report = load_pretrained_decoder(sgpn, tmp_path / "gpen.pth")
    assert report.layout == "gpen"
    assert "netG.convs.0.noise.weight" in report.copied and "netG.convs.0.convs_mask.0.weight" in report.not_copied
    features = _features(sgpn, 2)
    with torch.no_grad():
        assert torch.allclose(_synthesis(sgpn, w, features), gpen.generator(w, features), atol=1e-5)

    # rosinality: additive noise off -> SGPN reproduces the StyleGAN2 image whatever the features
    plain = PlainStyleGAN2Synthesis(**SMALL)
    _randomise_(plain, 3)
    with torch.no_grad():
        for layer in [plain.conv1, *plain.convs]:
            layer.noise.weight.zero_()
        expected = plain(w)
    state = plain.state_dict()
    torch.save({"g_ema": state, "latent_avg": torch.zeros(16)}, tmp_path / "rosinality.pt")
    torch.manual_seed(10)            # the same initialisation of what is not copied, for the comparisons below
    sgpn = SGPNGenerator(**sgpn_config)
    assert load_pretrained_decoder(sgpn, tmp_path / "rosinality.pt").layout == "stylegan2_rosinality"
    with torch.no_grad():
        assert torch.allclose(_synthesis(sgpn, w, _features(sgpn, 4)), expected, atol=1e-4)
    loaded = sgpn.netG.state_dict()
    assert torch.all(loaded["convs.2.noise.weight"] == 1.0)          # feature scale: gradients reach the new weights
    half = loaded["convs.2.conv.weight"].shape[2] // 2
    assert torch.all(loaded["convs.2.conv.weight"][:, :, half:] == 0)
    out = _synthesis(sgpn, w, _features(sgpn, 5))
    out.square().mean().backward()
    assert sgpn.netG.convs[2].conv.weight.grad[:, :, half:].abs().sum() > 0

    # BasicSR StyleGAN2Generator (params_ema) and GFPGAN v1.3/v1.4 clean decoder (stylegan_decoder.*): same weights
    basicsr_state = _to_basicsr_names(state)
    for name, payload, layout in (("basicsr.pth", {"params_ema": basicsr_state}, "stylegan2_basicsr"),
                                  ("clean.pth", {"params_ema": _to_clean(basicsr_state)}, "stylegan2_clean")):
        torch.save(payload, tmp_path / name)
        torch.manual_seed(10)
        other = SGPNGenerator(**sgpn_config)
        assert load_pretrained_decoder(other, tmp_path / name).layout == layout
        for key, value in other.netG.state_dict().items():
            if not key.startswith("mlp."):
                assert torch.allclose(value, loaded[key], atol=1e-5), (layout, key)

    # a decoder of another width or a file of another network: one message naming the file and what it is
    torch.save({"g_ema": PlainStyleGAN2Synthesis(32, 2, 0.25, 16).state_dict()}, tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match=r"wide\.pt \(stylegan2_rosinality\) does not fit.*narrow"):
        load_pretrained_decoder(SGPNGenerator(**sgpn_config), tmp_path / "wide.pt")
    torch.save({"g_ema": PlainStyleGAN2Synthesis(64, 2, 0.125, 16).state_dict()}, tmp_path / "size64.pt")
    with pytest.raises(CheckpointError, match="64 px generator; network_g.size is 32"):
        load_pretrained_decoder(SGPNGenerator(**sgpn_config), tmp_path / "size64.pt")
    torch.save(SGPNGenerator(**sgpn_config).netE.state_dict(), tmp_path / "encoder.pth")
    with pytest.raises(CheckpointError, match="encoder.pth is a checkpoint of an unrecognised network"):
        load_pretrained_decoder(SGPNGenerator(**sgpn_config), tmp_path / "encoder.pth")
