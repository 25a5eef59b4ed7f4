"""BFM09 3DMM layer: real file layout (synthetic data), clear errors, geometry and lighting."""

import math

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat

from sgpn_arch.face3d.bfm import BFMError, ParametricFaceModel, euler_rotation
from sgpn_arch.face3d.bfm_synthetic import write_synthetic_bfm


def test_synthetic_file_has_the_real_layout(bfm_dir):
    data = loadmat(str(bfm_dir / "BFM09_model_info.mat"))
    n = data["meanshape"].shape[1]
    assert data["meanshape"].dtype == np.float32 and data["meanshape"].shape == (1, n)
    assert data["idBase"].shape == (n, 80) and data["idBase"].dtype == np.float32
    assert data["exBase"].shape == (n, 64) and data["exBase"].dtype == np.float64
    assert data["texBase"].shape == (n, 80) and data["meantex"].shape == (1, n)
    tri, buf, kp = data["tri"], data["point_buf"], data["keypoints"]
    assert tri.dtype == buf.dtype == kp.dtype == np.float32
    assert tri.min() == 1 and buf.min() == 1 and kp.min() >= 1          # 1-based
    assert buf.max() == len(tri) + 1 and buf.shape == (n // 3, 8)       # padding slot T+1
    assert kp.shape == (1, 68) and loadmat(str(bfm_dir / "similarity_Lm3D_all.mat"))["lm"].shape == (68, 3)


def test_model_reads_one_based_indices(bfm_dir):
    data = loadmat(str(bfm_dir / "BFM09_model_info.mat"))
    model = ParametricFaceModel.from_folder(bfm_dir)
    assert torch.equal(model.triangles, torch.from_numpy(data["tri"].astype(np.int64) - 1))
    assert int(model.point_buf.max()) == len(data["tri"])                # → the zero-normal slot
    mesh = model.compute(torch.zeros(1, 257))
    mean = data["meanshape"].reshape(-1, 3)
    np.testing.assert_allclose(mesh.vertices[0].numpy(), mean - mean.mean(0), atol=1e-5)


def test_pose_lighting_and_landmarks(bfm_dir):
    model = ParametricFaceModel.from_folder(bfm_dir)
    coeffs = torch.zeros(2, 257)
    coeffs[1, 224:227] = torch.tensor([0.1, -0.3, 0.2])
    coeffs[1, 254:257] = torch.tensor([0.2, -0.1, 0.5])
    mesh = model.compute(coeffs)
    base = mesh.vertices[0]
    rot = euler_rotation(coeffs[1:, 224:227])[0]
    np.testing.assert_allclose(mesh.vertices[1].numpy(), (base @ rot.T + coeffs[1, 254:]).numpy(), atol=1e-5)
    assert torch.allclose(rot @ rot.T, torch.eye(3), atol=1e-6)
    # band-0 lighting only: colour = albedo · 0.8 · π · (1 / √(4π)) for every vertex
    albedo = model.meantex.view(-1, 3)
    np.testing.assert_allclose(mesh.colors[0].numpy(), (albedo * 0.8 * math.pi / math.sqrt(4 * math.pi)).numpy(), rtol=1e-5)
    assert torch.allclose(mesh.gray_colors[0], torch.full_like(mesh.gray_colors[0], 127 * 0.8 * math.pi / math.sqrt(4 * math.pi)))
    # landmarks: projection of the keypoint vertices with the official camera
    v = mesh.vertices[1, model.keypoints]
    u = 112 + 1015 * v[:, 0] / (10 - v[:, 2])
    np.testing.assert_allclose(mesh.landmarks68[1, :, 0].numpy(), u.numpy(), rtol=1e-5)
    coeffs.requires_grad_(True)
    model.compute(coeffs).colors.sum().backward()
    assert coeffs.grad[:, 144:224].abs().sum() > 0 and coeffs.grad[:, 227:254].abs().sum() > 0


def test_missing_folder_and_files_are_named(tmp_path):
    with pytest.raises(BFMError, match="does not exist.*Basel Face Model"):
        ParametricFaceModel.from_folder(tmp_path / "nowhere")
    with pytest.raises(BFMError, match="BFM09_model_info.mat not found"):
        ParametricFaceModel.from_folder(tmp_path)


def test_malformed_files_are_explained(tmp_path):
    write_synthetic_bfm(tmp_path, grid=16)
    data = loadmat(str(tmp_path / "BFM09_model_info.mat"))
    del data["exBase"]
    savemat(str(tmp_path / "BFM09_model_info.mat"), {k: v for k, v in data.items() if not k.startswith("__")})
    with pytest.raises(BFMError, match="no 'exBase' entry"):
        ParametricFaceModel.from_folder(tmp_path)
    data["exBase"] = np.zeros((data["meanshape"].size, 10))
    savemat(str(tmp_path / "BFM09_model_info.mat"), {k: v for k, v in data.items() if not k.startswith("__")})
    with pytest.raises(BFMError, match="'exBase' has shape"):
        ParametricFaceModel.from_folder(tmp_path)
    data["exBase"] = np.zeros((data["meanshape"].size, 64))
    data["tri"] = data["tri"] - 1                                         # 0-based by mistake
    savemat(str(tmp_path / "BFM09_model_info.mat"), {k: v for k, v in data.items() if not k.startswith("__")})
    with pytest.raises(BFMError, match="1-based"):
        ParametricFaceModel.from_folder(tmp_path)
    (tmp_path / "similarity_Lm3D_all.mat").write_bytes(b"garbage")
    with pytest.raises(BFMError):
        ParametricFaceModel.from_folder(tmp_path)
