"""The full chain: aligned crop + landmarks → shape prior → generator, batched."""

import math

import pytest
import torch

from sgpn_arch.nets.model import build_sgpn
from sgpn_arch.pipeline import compilation
from sgpn_arch.pipeline.align import get_template
from sgpn_arch.zoo.checkpoints import CheckpointError


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
    with pytest.raises(ValueError, match="holds the D3DFR .* not the SGPN generator"):
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
def test_default_compiled_path_matches_plain(tiny_weights, bfm_dir, monkeypatch, tmp_path):
    """What every front end runs on CPU by default (compile="auto") equals eager float32 within 1e-4, and a
    second process (a fresh model) loads the package instead of compiling again."""
    monkeypatch.delenv("SGPN_COMPILE", raising=False)
    monkeypatch.setenv("SGPN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compilation, "_USER_CACHE_DIR", None)
    plain = build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir).accelerate(compile=False)
    compiled = build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir).accelerate(compile="auto")
    lq = torch.rand(1, 3, 512, 512) * 2 - 1
    expected = plain.restore(lq, _landmarks(1))
    got = compiled.restore(lq, _landmarks(1))
    assert not compiled.compiled_generator.failed   # compiled, no fallback to eager
    assert [p.suffix for p in (tmp_path / "compiled").iterdir()] == [".pt2"]   # one package, no temporary left
    torch.testing.assert_close(got.coeffs, expected.coeffs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.restored, expected.restored, atol=1e-4, rtol=1e-4)

    def no_build(*args):
        raise AssertionError("the package is on disk: nothing should compile")

    monkeypatch.setattr(compilation, "build_package", no_build)
    again = build_sgpn(tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir).accelerate(compile="auto")
    torch.testing.assert_close(again.restore(lq, _landmarks(1)).restored, got.restored, atol=0, rtol=0)
    assert not again.compiled_generator.failed


class _FixedCoeffs(torch.nn.Module):
    """Stands in for D3DFR: returns the given coefficients and remembers its input."""

    def __init__(self, coeffs):
        super().__init__()
        self.coeffs, self.seen = coeffs, None

    def forward(self, x):
        self.seen = x
        return self.coeffs.expand(x.shape[0], -1)


def _fixed_prior(bfm_dir, coeffs):
    from sgpn_arch.face3d.bfm import ParametricFaceModel
    from sgpn_arch.face3d.renderer import MeshRenderer
    from sgpn_arch.face3d.shape_prior import ShapePrior

    return ShapePrior(_FixedCoeffs(coeffs), ParametricFaceModel.from_folder(bfm_dir), MeshRenderer(backend="torch"))


def test_colour_render_is_clamped_grey_render_is_not(bfm_dir):
    # band-0 lighting only, so every vertex's shading is the hand-computable π/√(4π)·(0.8 + g0) per channel:
    # red far above 255 (→ 255), green below 0 (→ 0), blue 0.8 + 0.2 = 1.0 → albedo; grey = 127·shading, unclamped
    coeffs = torch.zeros(1, 257)
    coeffs[0, 227], coeffs[0, 236], coeffs[0, 245] = 20.0, -5.0, 0.2
    prior = _fixed_prior(bfm_dir, coeffs)(torch.zeros(1, 3, 512, 512), _landmarks(1))
    full = prior.mask[0, 0] == 1
    assert full.float().mean() > 0.1
    band0 = math.pi / math.sqrt(4 * math.pi)
    torch.testing.assert_close(prior.render[0, 0][full], torch.ones(int(full.sum())))        # 255 → +1
    torch.testing.assert_close(prior.render[0, 1][full], -torch.ones(int(full.sum())))       # 0 → −1
    assert prior.render[0, 2][full].max() <= 1
    grey_red = 127 * band0 * 20.8 / 255 * 2 - 1                                              # ≈ 17.4: unclamped
    torch.testing.assert_close(prior.render_gray[0, 0][full], torch.full((int(full.sum()),), grey_red))
    assert prior.render.min() >= -1 and prior.render.max() <= 1


def test_landmarks68_in_crop_pixels_match_the_render(bfm_dir):
    # render each surface point's own projected image position, warp it back to the crop as the render is,
    # and map it like landmarks68: every covered crop pixel must get its own coordinates back
    from sgpn_arch.face3d.renderer import project
    from sgpn_arch.pipeline.align import invert_affine, transform_points, warp_affine

    shape_prior = _fixed_prior(bfm_dir, torch.zeros(1, 257))
    prior = shape_prior(torch.zeros(1, 3, 512, 512), _landmarks(1))
    mesh = shape_prior.face_model.compute(torch.zeros(1, 257))
    image, mask = shape_prior.renderer(mesh.vertices, mesh.triangles, project(mesh.vertices))
    inverse = invert_affine(prior.crop_matrix)
    back = warp_affine(torch.cat([image, mask], 1), inverse, (512, 512))
    inside = torch.nn.functional.max_pool2d(1 - back[:, 2:3], 9, stride=1, padding=4)[0, 0] == 0  # well covered
    ys, xs = torch.nonzero(inside, as_tuple=True)
    assert len(ys) > 5000
    seen = back[0, :2, ys, xs].T[None]                                        # [1, N, 2] projected positions
    mapped = transform_points(seen - 0.5, inverse)[0]
    pixel = torch.stack([xs, ys], 1).float()
    assert (mapped - pixel).norm(dim=1).mean() < 0.05                       # without the −0.5: ≈ 1.25 px
    torch.testing.assert_close(prior.landmarks68, transform_points(mesh.landmarks68 - 0.5, inverse))


def test_d3dfr_window_outside_the_crop_is_grey(bfm_dir):
    # the official wrapper warps the [-1, 1] crop with zero padding, then maps to [0, 1]: outside is 0.5
    prior = _fixed_prior(bfm_dir, torch.zeros(1, 257))
    lm = (_landmarks(1) - 256) * 1.6 + 256    # a large face: the 224 window reaches past the 512 crop
    prior(-torch.ones(1, 3, 512, 512), lm)   # a black crop
    seen = prior.d3dfr.seen[0]
    assert seen.shape == (3, 224, 224)
    assert torch.all(seen[:, 112, 112] == 0) and torch.all(seen[:, 0, 0] == 0.5)
    assert 0.05 < (seen[0] == 0.5).float().mean() < 0.5


def test_compile_auto_is_cpu_only_and_can_be_turned_off(tiny_sgpn, monkeypatch):
    monkeypatch.delenv("SGPN_COMPILE", raising=False)
    model = tiny_sgpn.accelerate(compile="auto")
    try:
        compiled = model.compiled_generator
        assert compiled.uses_compiled(torch.device("cpu")) and not compiled.uses_compiled(torch.device("cuda"))
        assert model.accelerate(compile="auto").compiled_generator is compiled   # kept: nothing recompiles
        assert model.accelerate(compile=True).compiled_generator.uses_compiled(torch.device("cuda"))
        monkeypatch.setenv("SGPN_COMPILE", "0")
        assert model.accelerate(compile="auto").compiled_generator is None
        with pytest.raises(ValueError, match="compile"):
            model.accelerate(compile="yes")
    finally:
        model.accelerate(compile=False)


def test_sgpn_restore_compiles_by_default_and_no_compile_opts_out(tiny_weights, bfm_dir, retinaface_dir,
                                                                   tmp_path, monkeypatch):
    from sgpn_arch.cli import build_parser, build_restorer

    monkeypatch.delenv("SGPN_COMPILE", raising=False)
    base = ["restore", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--generator", str(tiny_weights["sgpn"]),
            "--d3dfr", str(tiny_weights["d3dfr"]), "--bfm", str(bfm_dir), "--detector", "retinaface_mobile0.25",
            "--detector-dir", str(retinaface_dir), "--device", "cpu", "--offline"]
    default = build_restorer(build_parser().parse_args(base)).model.compiled_generator
    assert default is not None and default.uses_compiled(torch.device("cpu"))
    assert build_restorer(build_parser().parse_args(base + ["--no-compile"])).model.compiled_generator is None
