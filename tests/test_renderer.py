"""Renderer against analytic meshes: coverage, projection, pixel centres, depth order, interpolation, gradients."""

import pytest
import torch

from sgpn_arch.face3d.renderer import MeshRenderer, project, pytorch3d_available

SQUARE_TRIS = torch.tensor([[0, 1, 2], [0, 2, 3]])


def square(x0, x1, y0, y1, z=0.0):
    return torch.tensor([[[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]])


def render(vertices, triangles, attributes):
    return MeshRenderer(backend="torch")(vertices, triangles, attributes)


def test_square_coverage_follows_projection_and_pixel_centres():
    # X in [-0.5, 0.5] at Z = 0 → u in [112 − 50.75, 112 + 50.75] = [61.25, 162.75]
    _, mask = render(square(-0.5, 0.5, -0.5, 0.5), SQUARE_TRIS, torch.ones(1, 4, 1))
    cols = torch.nonzero(mask[0, 0].any(0)).squeeze(1)
    rows = torch.nonzero(mask[0, 0].any(1)).squeeze(1)
    assert (cols.min().item(), cols.max().item()) == (61, 162)       # centres 61.5 … 162.5
    assert (rows.min().item(), rows.max().item()) == (61, 162)
    assert mask.sum().item() == 102 * 102


@pytest.mark.parametrize("edge,first_col", [(100.45, 100), (100.55, 101)])
def test_subpixel_edge_decides_by_pixel_centre(edge, first_col):
    x_left = (edge - 112) * 10 / 1015                                # u = edge exactly
    _, mask = render(square(x_left, 0.5, -0.5, 0.5), SQUARE_TRIS, torch.ones(1, 4, 1))
    assert torch.nonzero(mask[0, 0].any(0)).min().item() == first_col


def test_projection_formula_and_image_rows_point_down():
    uv = project(torch.tensor([[0.3, 0.2, 1.0]]))
    assert uv[0, 0].item() == pytest.approx(112 + 1015 * 0.3 / 9) and uv[0, 1].item() == pytest.approx(112 - 1015 * 0.2 / 9)
    _, mask = render(square(-0.2, 0.2, 0.3, 0.6), SQUARE_TRIS, torch.ones(1, 4, 1))   # above the axis
    assert torch.nonzero(mask[0, 0].any(1)).max().item() < 112


@pytest.mark.parametrize("near_first", [True, False])
def test_nearest_surface_wins(near_first):
    far = square(-0.5, 0.5, -0.5, 0.5, z=0.0)
    near = square(-0.2, 0.8, -0.2, 0.8, z=1.0)                        # depth 9 < 10
    verts = torch.cat([near, far], 1) if near_first else torch.cat([far, near], 1)
    tris = torch.cat([SQUARE_TRIS, SQUARE_TRIS + 4])
    colour = torch.tensor([1.0, 0.0]).repeat_interleave(4)[:, None][None]   # first square 1, second 0
    image, _ = render(verts, tris, colour)
    u_overlap = int(112 + 1015 * 0.1 / 9)                             # inside both
    assert image[0, 0, u_overlap, u_overlap].item() == (1.0 if near_first else 0.0)


def test_perspective_correct_interpolation_on_tilted_plane():
    # plane Z = 0.8·X; attribute = X. At pixel u the ray X = (u−112)(10−Z)/1015 meets the plane.
    verts = torch.tensor([[[-0.5, -0.5, -0.4], [0.5, -0.5, 0.4], [0.5, 0.5, 0.4], [-0.5, 0.5, -0.4]]])
    image, mask = render(verts, SQUARE_TRIS, verts[..., :1])
    j = torch.arange(224, dtype=torch.float64)
    k = (j + 0.5 - 112) / 1015
    x_true = 10 * k / (1 + 0.8 * k)
    row = image[0, 0, 112].double()
    covered = mask[0, 0, 112].bool()
    torch.testing.assert_close(row[covered], x_true[covered], atol=2e-5, rtol=0)
    # a screen-space (non perspective-correct) interpolation would be off by far more
    assert (x_true[covered] - (j[covered] + 0.5 - 112) * 10 / 1015).abs().max() > 1e-2


def test_gradients_reach_colours_and_positions():
    verts = square(-0.5, 0.5, -0.5, 0.5, z=0.2).requires_grad_(True)
    colours = torch.rand(1, 4, 3, requires_grad=True)
    image, _ = render(verts, SQUARE_TRIS, colours)
    (image * torch.linspace(0, 1, 224)).sum().backward()
    assert colours.grad.abs().sum() > 0
    assert verts.grad.abs().sum() > 0 and torch.isfinite(verts.grad).all()


def test_batch_elements_are_independent():
    a, b = square(-0.5, 0.5, -0.5, 0.5), square(-0.1, 0.3, -0.2, 0.2, z=2.0)
    colours = torch.rand(2, 4, 2)
    both, mask = render(torch.cat([a, b]), SQUARE_TRIS, colours)
    single, _ = render(b, SQUARE_TRIS, colours[1:])
    torch.testing.assert_close(both[1:], single)
    assert mask[0].sum() > mask[1].sum()


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown renderer backend"):
        MeshRenderer(backend="opengl")
    if not pytorch3d_available():
        with pytest.raises(ImportError, match="pytorch3d is not installed"):
            MeshRenderer(backend="pytorch3d")


@pytest.mark.skipif(not pytorch3d_available(), reason="pytorch3d not installed (no Linux wheel on PyPI)")
def test_pytorch3d_backend_gives_the_same_image(bfm_dir):
    from sgpn_arch.face3d.bfm import ParametricFaceModel

    mesh = ParametricFaceModel.from_folder(bfm_dir).compute(torch.zeros(1, 257))
    ours, mask = MeshRenderer(backend="torch")(mesh.vertices, mesh.triangles, mesh.colors)
    theirs, mask3d = MeshRenderer(backend="pytorch3d")(mesh.vertices, mesh.triangles, mesh.colors)
    assert (mask != mask3d).float().mean() < 1e-3
    both = (mask * mask3d).bool().expand_as(ours)
    torch.testing.assert_close(ours[both], theirs[both], atol=1e-2, rtol=1e-3)
