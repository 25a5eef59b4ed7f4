"""Alignment maths: face templates, similarity fits, the 512→224 D3DFR crop, differentiable warps.

Points are ``(x, y)`` pixel coordinates with pixel centres at integers (OpenCV convention), ordered
left eye, right eye, nose, mouth left, mouth right.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ArcFace 96×112 five-point reference (the common face-recognition alignment target).
ARCFACE_96X112 = np.array([[30.29459953, 51.69630051], [65.53179932, 51.50139999], [48.02519989, 71.73660278],
                           [33.54930115, 92.3655014], [62.72990036, 92.20410156]])
# SGPN demo template: ArcFace points squared to 112 (+8 in x), padded by 0.25 (+28), scaled 168 → 512.
SGPN_TEMPLATE_512 = (ARCFACE_96X112 + (8.0, 0.0) + 28.0) * (512 / 168)
# facexlib FaceRestoreHelper(face_size=512) template (FFHQ alignment, used by GFPGAN/CodeFormer).
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.19360], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)
TEMPLATES = {"sgpn": SGPN_TEMPLATE_512, "ffhq": FFHQ_TEMPLATE_512}

D3DFR_SIZE = 224
D3DFR_RESCALE = 102.0


def get_template(name_or_points: str | np.ndarray = "sgpn", size: int = 512, dtype=np.float32) -> np.ndarray:
    """Five template points for a ``size``×``size`` crop: ``"sgpn"``, ``"ffhq"`` or explicit 512-px points."""
    if isinstance(name_or_points, str):
        if name_or_points not in TEMPLATES:
            raise ValueError(f"unknown alignment template {name_or_points!r}; use one of {sorted(TEMPLATES)} "
                             "or five (x, y) points for a 512 crop")
        points = TEMPLATES[name_or_points]
    else:
        points = np.asarray(name_or_points, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise ValueError(f"a custom template must be five finite (x, y) points, got shape {points.shape}")
    return (points * (size / 512.0)).astype(dtype)


def similarity_transform(src: np.ndarray, dst: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping ``src`` points onto ``dst``; (2, 3)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / s_c.var(0).sum()
    trans = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, trans[:, None]]).astype(dtype)


def lm3d_five_points(lm68: np.ndarray) -> np.ndarray:
    """Reduce the 68 iBUG 3D landmarks to the five alignment points (eyes averaged)."""
    lm68 = np.asarray(lm68, dtype=np.float32)
    if lm68.shape != (68, 3):
        raise ValueError(f"expected 68×3 landmarks, got {lm68.shape}")
    idx = lambda n: n - 1  # noqa: E731  (1-based iBUG numbering)
    return np.stack([lm68[[idx(37), idx(40)]].mean(0), lm68[[idx(43), idx(46)]].mean(0), lm68[idx(31)],
                     lm68[idx(49)], lm68[idx(55)]]).astype(np.float32)


def _fit_scale_translation(points_2d: torch.Tensor, points_3d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares affine camera ``[x, y] = P [X, Y, Z, 1]`` → mean row scale and translation."""
    b, n, _ = points_2d.shape
    homo = torch.cat([points_3d, torch.ones(n, 1, dtype=points_3d.dtype, device=points_3d.device)], dim=1)
    zeros = torch.zeros_like(homo)
    design = torch.cat([torch.cat([homo, zeros], 1), torch.cat([zeros, homo], 1)], 0)      # [2n, 8]
    target = torch.cat([points_2d[..., 0], points_2d[..., 1]], dim=1)                     # [B, 2n]
    k = torch.linalg.lstsq(design.expand(b, -1, -1), target[..., None]).solution[..., 0]   # [B, 8]
    scale = (k[:, 0:3].norm(dim=1) + k[:, 4:7].norm(dim=1)) / 2
    return scale, torch.stack([k[:, 3], k[:, 7]], dim=1)


def d3dfr_crop_matrix(landmarks: torch.Tensor, lm3d_5: torch.Tensor, crop_size: int = 512) -> torch.Tensor:
    """Affine ``[B,2,3]`` mapping crop pixels to the 224 D3DFR input, from the crop's 5 landmarks.

    Same procedure as the official code: fit scale and translation of the 3D reference to the
    y-flipped landmarks, rescale by 102/s, centre on 224, flip back; the result is scale+translation
    (the official similarity fit between crop and target points recovers exactly this matrix).
    """
    lm = landmarks.to(torch.float64)
    flipped = torch.stack([lm[..., 0], (crop_size - 1) - lm[..., 1]], dim=-1)
    scale, trans = _fit_scale_translation(flipped, lm3d_5.to(lm))
    s = D3DFR_RESCALE / scale                                                   # [B]
    # the official code resizes the crop to int(S·s) pixels and shifts landmarks by half that size
    resized = torch.floor(crop_size * s)
    offset = crop_size * s / 2 - resized / 2 + D3DFR_SIZE / 2
    # x' = s·(x − tx) + offset;  y' = 223 − (s·(S−1−y − ty) + offset)
    zero = torch.zeros_like(s)
    row_x = torch.stack([s, zero, offset - s * trans[:, 0]], dim=1)
    row_y = torch.stack([zero, s, (D3DFR_SIZE - 1) - s * (crop_size - 1) + s * trans[:, 1] - offset], dim=1)
    return torch.stack([row_x, row_y], dim=1).to(landmarks.dtype)


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of batched 2×3 affine matrices."""
    linear = matrix[..., :2]
    inv = torch.linalg.inv(linear)
    return torch.cat([inv, -(inv @ matrix[..., 2:])], dim=-1)


def transform_points(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``[B,2,3]`` affines to points ``[B,N,2]``."""
    return points @ matrix[..., :2].transpose(-1, -2) + matrix[..., None, :, 2]


def warp_affine(image: torch.Tensor, matrix: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Differentiable ``cv2.warpAffine`` equivalent: bilinear, zero padding, ``matrix`` maps src→dst px."""
    b, _, h_in, w_in = image.shape
    h_out, w_out = out_hw
    inv = invert_affine(matrix.to(image.dtype))                                # dst px → src px
    # normalised (align_corners=False) ↔ pixel:  p = ((n + 1)·size − 1) / 2
    to_px = torch.tensor([[w_out / 2, 0, (w_out - 1) / 2], [0, h_out / 2, (h_out - 1) / 2], [0, 0, 1]],
                         dtype=image.dtype, device=image.device)
    from_px = torch.tensor([[2 / w_in, 0, 1 / w_in - 1], [0, 2 / h_in, 1 / h_in - 1]],
                           dtype=image.dtype, device=image.device)
    inv3 = torch.cat([inv, torch.tensor([[[0, 0, 1]]], dtype=image.dtype, device=image.device).expand(b, -1, -1)], 1)
    theta = from_px @ inv3 @ to_px
    grid = F.affine_grid(theta, [b, image.shape[1], h_out, w_out], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
