"""SGPN generator, discriminator and D3DFR: official key layout, strict loading, forward semantics."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sgpn_arch.nets.d3dfr import ReconNet
from sgpn_arch.nets.discriminator import SGPNDiscriminator
from sgpn_arch.nets.generator import SGPNGenerator
from sgpn_arch.nets.stylegan2_ops import ModulatedConv2d, upfirdn2d
from sgpn_arch.zoo.checkpoints import CheckpointError, load_state_dict_file, save_state_dict

REFERENCE = {
    "state_dict_sgpn_generator.json": SGPNGenerator,
    "state_dict_sgpn_discriminator.json": SGPNDiscriminator,
    "state_dict_d3dfr_reconnet.json": ReconNet,
}


@pytest.mark.parametrize("table,cls", REFERENCE.items())
def test_state_dict_matches_official_layout(shared_dir, table, cls):
    reference = json.loads((shared_dir / "reference" / table).read_text())
    ours = {k: list(v.shape) for k, v in cls().state_dict().items()}
    assert list(ours) == list(reference)
    assert ours == reference


def test_parameter_counts_match_reference():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    gen = SGPNGenerator()
    assert count(gen.netE) == 13_086_080 and count(gen.netG) == 61_452_583
    assert count(SGPNDiscriminator()) == 28_982_849
    assert count(ReconNet()) == 24_034_625


def _inputs(batch, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
            torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
            torch.randn(batch, 257, generator=g) * 0.1)


@pytest.mark.slow
def test_official_checkpoint_roundtrip_reproduces_output(official_weights):
    state = load_state_dict_file(official_weights["sgpn"])
    source = SGPNGenerator()
    source.load_state_dict(state, strict=True)
    assert SGPNGenerator.config_from_state_dict(state) == dict(
        size=512, channel_multiplier=2, narrow=1.0, style_dim=512, code_dim=256, n_mlp=3, coeff_dim=257)
    loaded = SGPNGenerator.from_state_dict(load_state_dict_file(official_weights["sgpn"]))
    lq, render, coeffs = _inputs(1, 512)
    with torch.inference_mode():
        expected = source(lq, render, coeffs)
        got = loaded(lq, render, coeffs)
    assert got.shape == (1, 3, 512, 512)
    assert torch.isfinite(got).all()
    assert torch.equal(got, expected)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_tiny_checkpoint_roundtrip_and_wrappers(tmp_path, suffix):
    torch.manual_seed(1)
    model = SGPNGenerator(size=64, narrow=0.125, style_dim=32, code_dim=16)
    for p in model.parameters():
        p.data.normal_(0, 0.5)
    path = save_state_dict(model.state_dict(), tmp_path / f"g{suffix}")
    lq, render, coeffs = _inputs(2, 64)
    loaded = SGPNGenerator.from_state_dict(load_state_dict_file(path))
    with torch.inference_mode():
        assert torch.equal(loaded(lq, render, coeffs), model(lq, render, coeffs))
    # BasicSR layout with DataParallel prefixes loads the EMA weights
    wrapped = {"params": {"module." + k: torch.zeros_like(v) for k, v in model.state_dict().items()},
               "params_ema": {"module." + k: v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "basicsr.pth")
    state = load_state_dict_file(tmp_path / "basicsr.pth")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_unreadable_and_foreign_checkpoints_give_clear_errors(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth is a text file starting 'not a checkpoint'"):
        load_state_dict_file(tmp_path / "bad.pth")
    (tmp_path / "damaged.pth").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="cannot read weights file .*damaged.pth"):
        load_state_dict_file(tmp_path / "damaged.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_file(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="not an SGPN generator"):
        SGPNGenerator.config_from_state_dict(ReconNet().state_dict())


def test_modulated_conv_equals_per_sample_weight_formula():
    """Our input/output-scaling form against StyleGAN2's per-sample modulated weights."""
    torch.manual_seed(0)
    for upsample in (False, True):
        conv = ModulatedConv2d(6, 5, 3, style_dim=4, upsample=upsample)
        conv.modulation.bias.data.normal_()
        x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 4)
        s = conv.modulation(style)
        expected = []
        for b in range(3):
            w = conv.weight[0] * conv.scale * s[b][None, :, None, None]
            w = w * torch.rsqrt(w.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            if upsample:
                y = F.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2)
                expected.append(upfirdn2d(y, conv.blur.kernel, pad=(1, 1)))
            else:
                expected.append(F.conv2d(x[b:b + 1], w, padding=1))
        torch.testing.assert_close(conv(x, style), torch.cat(expected), rtol=1e-4, atol=1e-5)
        # the single-sample path folds the style into the weights instead
        torch.testing.assert_close(conv(x[:1], style[:1]), expected[0], rtol=1e-4, atol=1e-5)


def test_upfirdn2d_matches_direct_definition():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5)
    kernel = torch.rand(4, 4)
    out = upfirdn2d(x, kernel, up=2, pad=(2, 1))
    # direct definition: zero-insert, pad, true convolution sum_k x[p - k] * kernel[k]
    up = torch.zeros(1, 2, 10, 10)
    up[:, :, ::2, ::2] = x
    padded = F.pad(up, (2, 1, 2, 1))
    ref = torch.zeros(1, 2, 10, 10)
    for i in range(10):
        for j in range(10):
            patch = padded[:, :, i:i + 4, j:j + 4]
            ref[:, :, i, j] = (patch * kernel.flip(0, 1)).sum(dim=(2, 3))
    torch.testing.assert_close(out, ref)


def test_affb_mask_selects_between_lq_and_render_features():
    torch.manual_seed(0)
    gen = SGPNGenerator(size=16, narrow=0.0625, style_dim=8, code_dim=8)
    block = gen.netG.convs[1]
    block.noise.weight.data.fill_(1.0)
    c = block.conv.out_channels
    x, style = torch.randn(1, block.conv.in_channels, 8, 8), torch.randn(1, 8)
    f_lq, f_3d = torch.randn(1, c, 8, 8), torch.randn(1, c, 8, 8)
    for bias, expected in ((1e4, f_lq), (-1e4, f_3d)):
        block.convs_mask[0].bias.data.fill_(bias)
        out = block(x, style, f_lq, f_3d)
        injected = out[:, c:] / math.sqrt(2) - block.activate.bias[c:].view(1, -1, 1, 1) / math.sqrt(2)
        positive = expected + block.activate.bias[c:].view(1, -1, 1, 1) > 0
        torch.testing.assert_close(injected[positive], expected[positive], rtol=1e-4, atol=1e-4)


def test_generator_uses_render_and_coefficients():
    torch.manual_seed(0)
    gen = SGPNGenerator(size=32, narrow=0.125, style_dim=16, code_dim=8).eval()
    for m in gen.modules():
        if hasattr(m, "weight") and m.weight is not None and m.weight.numel() == 1:
            m.weight.data.fill_(0.5)
    lq, render, coeffs = _inputs(2, 32)
    with torch.inference_mode():
        base = gen(lq, render, coeffs)
        assert base.shape == (2, 3, 32, 32)
        assert not torch.allclose(base, gen(lq, -render, coeffs))
        assert not torch.allclose(base, gen(lq, render, coeffs + 1))
        # batching is per sample: the first sample's output does not depend on the second
        torch.testing.assert_close(gen(lq[:1], render[:1], coeffs[:1]), base[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_discriminator_forward(batch):
    disc = SGPNDiscriminator(size=64, narrow=0.125)
    assert disc(torch.randn(batch, 3, 64, 64)).shape == (batch, 1)


def test_d3dfr_outputs_257_coefficients_and_starts_at_mean_face():
    net = ReconNet().eval()
    with torch.inference_mode():
        out = net(torch.rand(2, 3, 224, 224))
    assert out.shape == (2, 257)
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("batch", [1, 2])
def test_inference_path_matches_autograd_path(batch):
    """Without autograd the encoder and the AFFB blocks take their fused in-place path: same numbers."""
    from sgpn_arch.zoo.checkpoints import randomize_generator_

    gen = SGPNGenerator(size=64, narrow=0.25).eval()
    randomize_generator_(gen, 0)   # non-zero noise weights and biases: every fused term matters
    for name, param in gen.named_parameters():
        if name.endswith("bias"):
            param.data.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    lq, render, coeffs = _inputs(batch, 64)
    with torch.no_grad():
        fused = gen(lq, render, coeffs)
    reference = gen(lq, render, coeffs)   # grad enabled: the plain formulation (torch.cat, out-of-place)
    assert reference.requires_grad and not fused.requires_grad
    torch.testing.assert_close(fused, reference.detach(), rtol=1e-5, atol=1e-5)
    block = gen.netG.convs[3]   # a fused AFFB on its own
    c, res = block.conv.out_channels, 16
    x, style = torch.randn(batch, block.conv.in_channels, res, res), torch.randn(batch, 512)
    f_lq, f_3d = torch.randn(batch, c, res, res), torch.randn(batch, c, res, res)
    mask_input = torch.cat([torch.full_like(f_lq, float("nan")), f_lq, f_3d], 1)
    with torch.no_grad():
        torch.testing.assert_close(block.forward_inference(x, style, mask_input, f_lq, f_3d),
                                   block(x, style, f_lq, f_3d), rtol=1e-5, atol=1e-5)
