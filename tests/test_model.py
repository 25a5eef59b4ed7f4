"""The full chain: aligned crop + landmarks → shape prior → generator, batched."""

import pytest
import torch

from sgpn_arch.align import get_template
from sgpn_arch.checkpoints import CheckpointError
from sgpn_arch.model import build_sgpn


def _landmarks(batch, size=512):
    return torch.tensor(get_template("sgpn", size))[None].repeat(batch, 1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_full_chain_official_size(official_weights, bfm_dir, batch):
    model = build_sgpn(official_weights["sgpn"], official_weights["d3dfr"], bfm_dir, renderer_backend="torch")
    lq = torch.rand(batch, 3, 512, 512) * 2 - 1
    out = model.restore(lq, _landmarks(batch))
    assert out.restored.shape == out.render.shape == (batch, 3, 512, 512)
    assert out.coeffs.shape == (batch, 257) and out.mask.shape == (batch, 1, 512, 512)
    assert out.restored.min() >= -1 and out.restored.max() <= 1 and torch.isfinite(out.restored).all()
    assert out.render.min() >= -1 and 0.05 < out.mask.mean() < 0.9
    # background of the render is −1 where nothing was rendered
    assert torch.all(out.render[out.mask.expand_as(out.render) == 0] == -1)


def test_shape_prior_outputs_and_batch_consistency(tiny_sgpn):
    lq = torch.rand(4, 3, 512, 512) * 2 - 1
    lm = _landmarks(4) + torch.randn(4, 5, 2)
    with torch.inference_mode():
        prior = tiny_sgpn.shape_prior(lq, lm)
        single = tiny_sgpn.shape_prior(lq[2:3], lm[2:3])
    assert prior.render_gray.shape == (4, 3, 512, 512) and prior.landmarks68.shape == (4, 68, 2)
    torch.testing.assert_close(single.render, prior.render[2:3], atol=1e-4, rtol=1e-4)
    # projected landmarks sit inside the crop, around the aligned face
    assert prior.landmarks68.min() > 0 and prior.landmarks68.max() < 512
    out = tiny_sgpn.restore(lq, lm)
    assert out.restored.shape == (4, 3, 512, 512)


def test_shape_prior_is_differentiable(tiny_sgpn):
    lq = (torch.rand(1, 3, 512, 512) * 2 - 1).requires_grad_(True)
    prior = tiny_sgpn.shape_prior(lq, _landmarks(1))
    (prior.render.mean() + prior.landmarks68.mean()).backward()
    assert lq.grad.abs().sum() > 0


def test_restore_validates_inputs(tiny_sgpn):
    with pytest.raises(ValueError, match=r"\[B,3,512,512\]"):
        tiny_sgpn.restore(torch.zeros(1, 3, 256, 256), _landmarks(1))
    with pytest.raises(ValueError, match="landmarks"):
        tiny_sgpn.restore(torch.zeros(2, 3, 512, 512), _landmarks(1))


def test_wrong_checkpoints_are_named(tiny_weights, bfm_dir):
    with pytest.raises(ValueError, match="not an SGPN generator"):
        build_sgpn(tiny_weights["d3dfr"], tiny_weights["d3dfr"], bfm_dir)
    with pytest.raises(CheckpointError, match="D3DFR"):
        build_sgpn(tiny_weights["sgpn"], tiny_weights["sgpn"], bfm_dir)


def test_accelerated_paths_match_plain(tiny_weights, bfm_dir):
    plain = build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir)
    lq = torch.rand(2, 3, 512, 512) * 2 - 1
    expected = plain.restore(lq, _landmarks(2)).restored
    bf16 = build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir).accelerate(dtype=torch.bfloat16)
    got = bf16.restore(lq, _landmarks(2)).restored
    assert got.dtype == torch.float32 and (got - expected).abs().mean() < 0.05
    with pytest.raises(ValueError, match="dtype"):
        plain.accelerate(dtype=torch.int8)


@pytest.mark.slow
def test_compiled_path_matches_plain(tiny_weights, bfm_dir):
    plain = build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir)
    compiled = build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir).accelerate(compile=True)
    lq = torch.rand(1, 3, 512, 512) * 2 - 1
    expected = plain.restore(lq, _landmarks(1))
    got = compiled.restore(lq, _landmarks(1))
    torch.testing.assert_close(got.coeffs, expected.coeffs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.restored, expected.restored, atol=1e-4, rtol=1e-4)
