"""Alignment maths: templates, similarity fit, the official 512→224 D3DFR matrix, warps."""

import cv2
import numpy as np
import pytest
import torch

from sgpn_arch.face3d.bfm_synthetic import REFERENCE_LM3D_5
from sgpn_arch.pipeline.align import (d3dfr_crop_matrix, get_template, invert_affine, lm3d_five_points,
                                      similarity_transform, transform_points, warp_affine)

OFFICIAL_SGPN = [[0.56712, 0, -33.35626], [0, 0.56712, -57.32462]]
OFFICIAL_FFHQ = [[0.50423, 0, -17.58285], [0, 0.50423, -36.81010]]


@pytest.mark.parametrize("template,expected", [("sgpn", OFFICIAL_SGPN), ("ffhq", OFFICIAL_FFHQ)])
def test_d3dfr_matrix_matches_official_values(template, expected):
    landmarks = torch.tensor(get_template(template))[None]
    matrix = d3dfr_crop_matrix(landmarks, torch.tensor(REFERENCE_LM3D_5))
    np.testing.assert_allclose(matrix[0].numpy(), expected, atol=2e-3)


def test_d3dfr_matrix_from_synthetic_reference_file(bfm_dir):
    from scipy.io import loadmat

    lm5 = lm3d_five_points(loadmat(str(bfm_dir / "similarity_Lm3D_all.mat"))["lm"])
    np.testing.assert_allclose(lm5, REFERENCE_LM3D_5, atol=1e-5)
    matrix = d3dfr_crop_matrix(torch.tensor(get_template("sgpn"))[None].repeat(3, 1, 1), torch.tensor(lm5))
    np.testing.assert_allclose(matrix.numpy(), np.array([OFFICIAL_SGPN] * 3), atol=2e-3)


def test_d3dfr_matrix_follows_the_face():
    base = torch.tensor(get_template("sgpn"))
    shifted = base + torch.tensor([20.0, -10.0])
    m0, m1 = d3dfr_crop_matrix(torch.stack([base, shifted]), torch.tensor(REFERENCE_LM3D_5))
    # the same face shifted in the crop lands at the same 224 position
    np.testing.assert_allclose(transform_points(shifted[None], m1[None]), transform_points(base[None], m0[None]),
                               atol=1e-3)


def test_templates_and_errors():
    np.testing.assert_allclose(get_template("sgpn", 256), get_template("sgpn") / 2)
    assert np.linalg.norm(get_template("sgpn")[0] - get_template("sgpn")[1]) == pytest.approx(107.4, abs=0.1)
    with pytest.raises(ValueError, match="unknown alignment template"):
        get_template("arcface")
    with pytest.raises(ValueError, match="five finite"):
        get_template(np.zeros((4, 2)))


def test_similarity_transform_recovers_known_similarity():
    angle, scale, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    matrix = similarity_transform(src, src @ rot.T + t)
    np.testing.assert_allclose(matrix, np.hstack([rot, t[:, None]]), atol=1e-4)
    # facexlib → SGPN template: scale ≈ 0.8902, no rotation (reference/README.md)
    m = similarity_transform(get_template("ffhq"), get_template("sgpn"))
    assert np.hypot(*m[:, 0]) == pytest.approx(0.8902, abs=1e-3) and abs(m[1, 0]) < 5e-3


def test_warp_affine_matches_opencv_and_inverts():
    rng = np.random.default_rng(0)
    image = rng.random((40, 50, 3)).astype(np.float32)
    matrix = np.array([[0.8, 0.1, 3.2], [-0.1, 0.9, -2.0]], np.float32)
    expected = cv2.warpAffine(image, matrix, (30, 35), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    got = warp_affine(torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(matrix)[None], (35, 30))
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy()[2:-2, 2:-2], expected[2:-2, 2:-2], atol=1e-4)
    m = torch.from_numpy(matrix)[None]
    np.testing.assert_allclose((invert_affine(invert_affine(m))).numpy(), m.numpy(), atol=1e-5)


def test_sgpn_template_exact_and_float64_alignment():
    # the demo's reference points, computed in float64: the rounded values of reference/README.md ± 1e-5
    readme = np.array([[202.04068, 242.88396], [309.43025, 242.28998], [256.07680, 303.95917],
                       [211.95977, 366.82819], [300.89112, 366.33631]])
    exact = get_template("sgpn", dtype=np.float64)
    assert exact.dtype == np.float64 and np.abs(exact - readme).max() < 1e-5
    assert get_template("sgpn").dtype == np.float32
    src = np.random.default_rng(1).uniform(0, 900, (5, 2))
    m64 = similarity_transform(src, exact, np.float64)
    assert m64.dtype == np.float64
    np.testing.assert_allclose(m64, similarity_transform(src, exact), rtol=1e-6, atol=1e-4)
