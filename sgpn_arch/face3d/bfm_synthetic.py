"""A small face-like 3DMM written in the real BFM09 file format, for tests and the offline demo.

The Basel Face Model cannot be redistributed; this writes a smooth ellipsoidal face shell with a nose,
low-frequency random bases and plausible landmarks, with exactly the keys, dtypes and 1-based index
conventions of ``BFM09_model_info.mat`` / ``similarity_Lm3D_all.mat`` (``shared/reference/bfm_format.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.io import savemat

from .bfm import LANDMARK_FILE, MODEL_FILE

# Five-point 3D reference of the real similarity_Lm3D_all.mat (left eye, right eye, nose, mouth l/r).
REFERENCE_LM3D_5 = np.array([[-0.31149, 0.29036, 0.13378], [0.30980, 0.28972, 0.13180], [0.00325, -0.04618, 0.55244],
                             [-0.25217, -0.38134, 0.22406], [0.24847, -0.38128, 0.22236]], dtype=np.float32)
HALF_WIDTH, HALF_HEIGHT, CENTRE_Y, DEPTH = 0.78, 1.05, -0.1, 0.45


def _surface_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r2 = np.clip(1 - (x / HALF_WIDTH) ** 2 - ((y - CENTRE_Y) / HALF_HEIGHT) ** 2, 0, None)
    nose = 0.22 * np.exp(-(x ** 2) / 0.012 - ((y + 0.02) ** 2) / 0.05)
    return (DEPTH * np.sqrt(r2) - 0.2 + nose).astype(np.float32)


def _landmarks_68_xy() -> np.ndarray:
    """Plausible iBUG-68 positions (x, y) in the model frame."""
    t = np.linspace(-1, 1, 17)
    jaw = np.stack([0.7 * np.sin(t * 1.3) / np.sin(1.3), -0.15 - 0.85 * np.cos(t * 1.2) ** 0.5 * 0.9], 1)
    brow_l = np.stack([np.linspace(-0.55, -0.12, 5), 0.45 + 0.05 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_r = brow_l * [-1, 1]
    nose = np.concatenate([np.stack([np.zeros(4), np.linspace(0.25, -0.02, 4)], 1),
                           np.stack([np.linspace(-0.12, 0.12, 5), np.full(5, -0.1)], 1)])
    eye = lambda cx: np.stack([cx + 0.1 * np.cos(np.linspace(np.pi, 3 * np.pi, 6, endpoint=False)),  # noqa: E731
                               0.29 + 0.04 * np.sin(np.linspace(np.pi, 3 * np.pi, 6, endpoint=False))], 1)
    a = np.linspace(np.pi, 3 * np.pi, 12, endpoint=False)
    mouth_outer = np.stack([0.25 * np.cos(a), -0.38 + 0.08 * np.sin(a)], 1)
    a = np.linspace(np.pi, 3 * np.pi, 8, endpoint=False)
    mouth_inner = np.stack([0.15 * np.cos(a), -0.38 + 0.03 * np.sin(a)], 1)
    return np.concatenate([jaw, brow_l, brow_r, nose, eye(-0.31), eye(0.31), mouth_outer, mouth_inner]).astype(np.float32)


def _smooth_basis(xy: np.ndarray, n: int, scale: float, rng: np.random.Generator, dims: int = 3) -> np.ndarray:
    """``n`` low-frequency random fields over the vertices, interleaved per vertex (3V × n)."""
    freq = rng.normal(0, 2.0, size=(n, 2))
    phase = rng.uniform(0, 2 * np.pi, size=n)
    direction = rng.normal(0, 1, size=(n, dims))
    field = np.cos(xy @ freq.T + phase)                          # [V, n]
    return (field[:, None, :] * direction.T[None] * scale).reshape(-1, n)


def write_synthetic_bfm(folder: str | os.PathLike, grid: int = 64, seed: int = 0) -> Path:
    """Write ``BFM09_model_info.mat`` and ``similarity_Lm3D_all.mat`` into ``folder``; returns ``folder``.

    ``grid`` sets the mesh resolution: about ``0.78·grid²`` vertices and twice as many triangles
    (``grid=214`` gives a mesh the size of the real BFM, 35k vertices / 70k triangles).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs = np.linspace(-HALF_WIDTH, HALF_WIDTH, grid)
    ys = np.linspace(CENTRE_Y - HALF_HEIGHT, CENTRE_Y + HALF_HEIGHT, grid)
    gx, gy = np.meshgrid(xs, ys)                                  # row i: y increasing
    inside = (gx / HALF_WIDTH) ** 2 + ((gy - CENTRE_Y) / HALF_HEIGHT) ** 2 <= 1.0
    index = -np.ones(gx.shape, dtype=np.int64)
    index[inside] = np.arange(inside.sum())
    xy = np.stack([gx[inside], gy[inside]], 1).astype(np.float32)
    vertices = np.concatenate([xy, _surface_z(xy[:, 0], xy[:, 1])[:, None]], 1)
    n_v = len(vertices)

    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]   # c d above a b (y up)
    full = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    tri = np.concatenate([np.stack([a[full], b[full], d[full]], 1), np.stack([a[full], d[full], c[full]], 1)])
    n_t = len(tri)
    point_buf = np.full((n_v, 8), n_t, dtype=np.int64)           # 0-based padding slot = T
    fill = np.zeros(n_v, dtype=np.int64)
    for t_idx, corners in enumerate(tri):
        for v in corners:
            point_buf[v, fill[v]] = t_idx
            fill[v] += 1

    lm_xy = _landmarks_68_xy()
    keypoints = np.argmin(((xy[None] - lm_xy[:, None]) ** 2).sum(-1), axis=1)
    lm3d = np.concatenate([lm_xy, _surface_z(lm_xy[:, 0], lm_xy[:, 1])[:, None]], 1)
    # make the five-point reduction equal the real reference (eye corner pairs straddle the eye centre)
    for (i, j), ref in zip(((36, 39), (42, 45)), REFERENCE_LM3D_5[:2]):
        half = (lm3d[j] - lm3d[i]) / 2
        lm3d[i], lm3d[j] = ref - half, ref + half
    lm3d[30], lm3d[48], lm3d[54] = REFERENCE_LM3D_5[2], REFERENCE_LM3D_5[3], REFERENCE_LM3D_5[4]

    skin = np.array([205.0, 155.0, 130.0], dtype=np.float32)
    meantex = np.tile(skin, (n_v, 1)) * (0.9 + 0.1 * np.cos(3 * xy[:, :1])) 
    model = {
        "meanshape": vertices.reshape(1, -1).astype(np.float32),
        "idBase": _smooth_basis(xy, 80, 0.01, rng).astype(np.float32),
        "exBase": _smooth_basis(xy, 64, 0.005, rng).astype(np.float64),
        "meantex": meantex.reshape(1, -1).astype(np.float32),
        "texBase": _smooth_basis(xy, 80, 3.0, rng).astype(np.float32),
        "tri": (tri + 1).astype(np.float32),
        "point_buf": (point_buf + 1).astype(np.float32),
        "keypoints": (keypoints + 1).reshape(1, -1).astype(np.float32),
        "skinmask": np.ones((1, n_v), dtype=np.float32),
        "tri_mask2": (tri + 1).astype(np.float32),
        "frontmask2_idx": np.arange(1, n_v + 1, dtype=np.float32)[:, None],
    }
    savemat(str(folder / MODEL_FILE), model)
    savemat(str(folder / LANDMARK_FILE), {"lm": lm3d.astype(np.float32)})
    return folder
