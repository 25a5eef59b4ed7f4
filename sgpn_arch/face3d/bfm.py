"""BFM09 3D morphable model layer: 257 coefficients → posed, lit face mesh and 68 projected landmarks.

Reads the two files of the official SGPN ``BFM/`` folder (see ``shared/reference/bfm_format.md``):
``BFM09_model_info.mat`` (bases, 1-based triangle/adjacency/keypoint indices) and
``similarity_Lm3D_all.mat`` (68 reference 3D landmarks).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..pipeline.align import lm3d_five_points
from .renderer import project

MODEL_FILE = "BFM09_model_info.mat"
LANDMARK_FILE = "similarity_Lm3D_all.mat"
GET_BFM = ("The official SGPN release bundle holds the converted BFM folder: `sgpn weights download` (or "
           "`sgpn weights import PATH` for a bundle downloaded in a browser) installs it where it is found "
           "automatically. Otherwise get the Basel Face Model 2009 (register at https://faces.dmi.unibas.ch/bfm/ for "
           "01_MorphableModel.mat), "
           "convert it with the BFM09 converter of 3DMM-Fitting-Pytorch / Deep3DFaceRecon_pytorch, and pass the "
           "folder holding BFM09_model_info.mat and similarity_Lm3D_all.mat with --bfm or SGPN_BFM_DIR.")

COEFF_SLICES = {"id": slice(0, 80), "exp": slice(80, 144), "tex": slice(144, 224), "angles": slice(224, 227),
                "gamma": slice(227, 254), "trans": slice(254, 257)}
GRAY_ALBEDO = 127.0
SH_BAND0_INIT = 0.8


class BFMError(FileNotFoundError):
    """The BFM folder is missing, incomplete or holds files of the wrong layout."""


@dataclass
class FaceMesh:
    """Posed mesh of a batch of faces (camera-world coordinates, camera at z = 10 looking down −z)."""

    vertices: torch.Tensor      # [B, V, 3]
    colors: torch.Tensor        # [B, V, 3] lit albedo, 0–255
    gray_colors: torch.Tensor   # [B, V, 3] flat grey albedo with the same lighting
    landmarks68: torch.Tensor   # [B, 68, 2] projected to the 224 image (official camera)
    triangles: torch.Tensor     # [T, 3] 0-based


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """``R = Rz·Ry·Rx`` from ``[B,3]`` angles (radians)."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rx = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Nine real spherical-harmonics basis values (with the Lambertian factors) per normal: ``[..., 9]``."""
    a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)
    c0, c1, c2 = 1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)
    nx, ny, nz = normals.unbind(-1)
    return torch.stack([
        torch.full_like(nx, a0 * c0), -a1 * c1 * ny, a1 * c1 * nz, -a1 * c1 * nx,
        a2 * c2 * nx * ny, -a2 * c2 * ny * nz, 0.5 * a2 * c2 / math.sqrt(3.0) * (3 * nz ** 2 - 1),
        -a2 * c2 * nx * nz, 0.5 * a2 * c2 * (nx ** 2 - ny ** 2)], dim=-1)


def _load_mat(path: Path, keys: dict[str, tuple]) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    if not path.is_file():
        raise BFMError(f"{path.name} not found in {path.parent}. {GET_BFM}")
    try:
        data = loadmat(str(path))
    except Exception as err:
        raise BFMError(f"{path} is not a readable MATLAB .mat file ({err}). {GET_BFM}") from None
    out = {}
    for key, ndim_cols in keys.items():
        if key not in data:
            raise BFMError(f"{path} has no '{key}' entry (found {sorted(k for k in data if not k.startswith('__'))}); "
                           f"expected the converted BFM09 layout. {GET_BFM}")
        value = np.asarray(data[key])
        ndim, cols = ndim_cols
        if value.ndim != ndim or (cols is not None and value.shape[-1] != cols):
            raise BFMError(f"{path}: '{key}' has shape {value.shape}, expected {ndim}-D with {cols} columns. {GET_BFM}")
        out[key] = value
    return out


class ParametricFaceModel(nn.Module):
    """BFM09 3DMM (bases as float32 buffers, 0-based indices)."""

    def __init__(self, meanshape, id_base, exp_base, meantex, tex_base, triangles, point_buf, keypoints, lm3d_68):
        super().__init__()
        t = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
        mean = t(meanshape).view(-1, 3)
        self.register_buffer("meanshape", (mean - mean.mean(0, keepdim=True)).view(-1))   # centred
        self.register_buffer("id_base", t(id_base))
        self.register_buffer("exp_base", t(exp_base))
        self.register_buffer("meantex", t(meantex).view(-1))
        self.register_buffer("tex_base", t(tex_base))
        self.register_buffer("triangles", t(triangles, torch.long))
        self.register_buffer("point_buf", t(point_buf, torch.long))
        self.register_buffer("keypoints", t(keypoints, torch.long).view(-1))
        self.register_buffer("lm3d_5", t(lm3d_five_points(lm3d_68)))
        self.n_vertices = mean.shape[0]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "ParametricFaceModel":
        """Read ``BFM09_model_info.mat`` and ``similarity_Lm3D_all.mat`` from ``folder``."""
        folder = Path(folder)
        if not folder.is_dir():
            raise BFMError(f"BFM folder {folder} does not exist. {GET_BFM}")
        m = _load_mat(folder / MODEL_FILE, {"meanshape": (2, None), "idBase": (2, 80), "exBase": (2, 64),
                                            "meantex": (2, None), "texBase": (2, 80), "tri": (2, 3),
                                            "point_buf": (2, 8), "keypoints": (2, 68)})
        lm = _load_mat(folder / LANDMARK_FILE, {"lm": (2, 3)})["lm"]
        n = m["meanshape"].size
        n_tri = len(m["tri"])
        for key in ("idBase", "exBase", "texBase"):
            if m[key].shape[0] != n:
                raise BFMError(f"{folder / MODEL_FILE}: '{key}' has {m[key].shape[0]} rows, meanshape has {n} values")
        if m["meantex"].size != n or n % 3 or m["point_buf"].shape[0] != n // 3 or lm.shape[0] != 68:
            raise BFMError(f"{folder}: inconsistent BFM sizes (meanshape {n}, meantex {m['meantex'].size}, "
                           f"point_buf rows {m['point_buf'].shape[0]}, landmarks {lm.shape[0]}). {GET_BFM}")
        tri, buf, kp = (np.rint(m[k]).astype(np.int64) - 1 for k in ("tri", "point_buf", "keypoints"))
        if tri.min() < 0 or tri.max() >= n // 3 or kp.min() < 0 or kp.max() >= n // 3 or buf.min() < 0 or buf.max() > n_tri:
            raise BFMError(f"{folder / MODEL_FILE}: indices out of range; 'tri', 'point_buf' and 'keypoints' must be "
                           f"1-based (point_buf padded with {n_tri + 1}). {GET_BFM}")
        return cls(m["meanshape"], m["idBase"], m["exBase"], m["meantex"], m["texBase"], tri, buf, kp, lm)

    @staticmethod
    def split_coeffs(coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``[B,257]`` into id, exp, tex, angles, gamma (SH lighting), trans."""
        if coeffs.shape[-1] != 257:
            raise ValueError(f"expected 257 3DMM coefficients, got {coeffs.shape[-1]}")
        return {name: coeffs[:, s] for name, s in COEFF_SLICES.items()}

    def vertex_normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """Normalised sum of the adjacent (area-weighted) face normals, ``[B,V,3]``."""
        v0, v1, v2 = (vertices[:, self.triangles[:, i]] for i in range(3))
        face_normals = torch.cross(v0 - v1, v1 - v2, dim=-1)
        face_normals = torch.cat([face_normals, face_normals.new_zeros(face_normals.shape[0], 1, 3)], dim=1)
        normals = face_normals[:, self.point_buf].sum(dim=2)
        return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def compute(self, coeffs: torch.Tensor) -> FaceMesh:
        """Posed, lit mesh for a batch of coefficients (differentiable)."""
        c = self.split_coeffs(coeffs.float())
        b = coeffs.shape[0]
        shape = (self.meanshape + c["id"] @ self.id_base.t() + c["exp"] @ self.exp_base.t()).view(b, -1, 3)
        albedo = (self.meantex + c["tex"] @ self.tex_base.t()).view(b, -1, 3)
        rotation = euler_rotation(c["angles"])
        vertices = shape @ rotation.transpose(1, 2) + c["trans"][:, None]
        normals = self.vertex_normals(shape) @ rotation.transpose(1, 2)
        gamma = c["gamma"].view(b, 3, 9) + torch.tensor([SH_BAND0_INIT] + [0.0] * 8, device=coeffs.device)
        shading = sh_basis(normals) @ gamma.transpose(1, 2)                     # [B, V, 3]
        return FaceMesh(vertices=vertices, colors=albedo * shading, gray_colors=GRAY_ALBEDO * shading,
                        landmarks68=project(vertices[:, self.keypoints]), triangles=self.triangles)
