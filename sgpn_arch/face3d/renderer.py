"""Differentiable mesh renderer in pure PyTorch (z-buffer + perspective-correct barycentrics).

Conventions of the official SGPN render (pytorch3d FoV camera, ``faces_per_pixel=1``, ``blur_radius=0``,
ambient-only shading): camera at z = 10 looking down −z, continuous image coordinates
``u = c + f·X/(10−Z)``, ``v = c − f·Y/(10−Z)``, pixel (i, j) sampled at its centre (j+0.5, i+0.5),
nearest surface wins, background 0. A ``pytorch3d`` backend gives the same images when installed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_FOCAL = 1015.0
DEFAULT_SIZE = 224
DEFAULT_CAMERA_DISTANCE = 10.0
MAX_PAIRS_PER_CHUNK = 8_000_000


def project(vertices: torch.Tensor, focal: float = DEFAULT_FOCAL, center: float = DEFAULT_SIZE / 2,
            camera_distance: float = DEFAULT_CAMERA_DISTANCE) -> torch.Tensor:
    """Continuous image coordinates ``[..., 2]`` of camera-world points ``[..., 3]``."""
    depth = camera_distance - vertices[..., 2]
    return torch.stack([center + focal * vertices[..., 0] / depth, center - focal * vertices[..., 1] / depth], -1)


def pytorch3d_available() -> bool:
    try:
        import pytorch3d.renderer  # noqa: F401
    except ImportError:
        return False
    return True


class MeshRenderer(nn.Module):
    """Render per-vertex attributes: ``(vertices [B,V,3], triangles [T,3], attributes [B,V,C])`` →
    ``(image [B,C,H,W], mask [B,1,H,W])``. Gradients reach attributes and vertex positions.

    ``backend``: ``"torch"`` (this file's rasterizer), ``"pytorch3d"`` or ``"auto"`` (pytorch3d when
    importable, else torch).
    """

    def __init__(self, image_size: int = DEFAULT_SIZE, focal: float = DEFAULT_FOCAL, center: float | None = None,
                 camera_distance: float = DEFAULT_CAMERA_DISTANCE, backend: str = "auto"):
        super().__init__()
        if backend not in ("auto", "torch", "pytorch3d"):
            raise ValueError(f"unknown renderer backend {backend!r}; use 'auto', 'torch' or 'pytorch3d'")
        if backend == "pytorch3d" and not pytorch3d_available():
            raise ImportError("renderer backend 'pytorch3d' requested but pytorch3d is not installed; "
                              "use backend='torch' (same images, no extra install)")
        self.backend = "pytorch3d" if backend == "auto" and pytorch3d_available() else backend.replace("auto", "torch")
        self.image_size = image_size
        self.focal = focal
        self.center = image_size / 2 if center is None else center
        self.camera_distance = camera_distance

    def forward(self, vertices: torch.Tensor, triangles: torch.Tensor,
                attributes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.backend == "pytorch3d":
            return self._render_pytorch3d(vertices, triangles, attributes)
        face_index, _ = self.rasterize(vertices, triangles)
        return self.interpolate(vertices, triangles, attributes, face_index)

    # --- pure PyTorch rasterizer -------------------------------------------------------------

    def _screen(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        uv = project(vertices, self.focal, self.center, self.camera_distance)
        return uv, self.camera_distance - vertices[..., 2]

    @torch.no_grad()
    def rasterize(self, vertices: torch.Tensor, triangles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest triangle per pixel: ``face_index [B,H,W]`` (−1 = background) and its depth."""
        b, size = vertices.shape[0], self.image_size
        uv, depth = self._screen(vertices.float())
        tri_uv = uv[:, triangles]                                   # [B, T, 3, 2]
        tri_depth = depth[:, triangles]                             # [B, T, 3]
        n_tri = triangles.shape[0]
        # pixel centres inside the bounding box: j + 0.5 in [umin, umax]
        lo = torch.ceil(tri_uv.amin(2) - 0.5).clamp(0, size - 1)
        hi = torch.floor(tri_uv.amax(2) - 0.5).clamp(-1, size - 1)
        extent = (hi - lo + 1).clamp_min(0)
        visible = (tri_depth > 0).all(-1) & (tri_uv.amax(2) >= 0).all(-1) & (tri_uv.amin(2) < size).all(-1)
        count = (extent[..., 0] * extent[..., 1] * visible).long().view(-1)   # [B*T]
        flat_uv, flat_depth = tri_uv.reshape(-1, 3, 2), tri_depth.reshape(-1, 3)
        flat_lo, flat_width = lo.reshape(-1, 2).long(), extent[..., 0].reshape(-1).long()
        candidates = torch.nonzero(count).squeeze(1)
        hits_pixel, hits_depth, hits_tri = [], [], []
        for chunk in _chunks(candidates, count, MAX_PAIRS_PER_CHUNK):
            pair_tri = torch.repeat_interleave(chunk, count[chunk])
            start = torch.cumsum(count[chunk], 0) - count[chunk]
            local = torch.arange(pair_tri.numel(), device=vertices.device) - torch.repeat_interleave(start, count[chunk])
            width = flat_width[pair_tri]
            px = flat_lo[pair_tri, 0] + local % width
            py = flat_lo[pair_tri, 1] + local // width
            screen, _, z = _perspective_barycentrics(flat_uv[pair_tri], flat_depth[pair_tri],
                                                     px.float() + 0.5, py.float() + 0.5)
            inside = (screen >= 0).all(-1) & torch.isfinite(z) & (z > 0)
            hits_pixel.append(((pair_tri // n_tri) * size * size + py * size + px)[inside])
            hits_depth.append(z[inside])
            hits_tri.append((pair_tri % n_tri)[inside])
        zbuf = torch.full((b * size * size,), math.inf, device=vertices.device)
        face = torch.full((b * size * size,), n_tri, dtype=torch.long, device=vertices.device)
        if hits_pixel:
            pixel, z, tri = torch.cat(hits_pixel), torch.cat(hits_depth), torch.cat(hits_tri)
            zbuf.scatter_reduce_(0, pixel, z, reduce="amin")
            nearest = z <= zbuf[pixel]
            # deterministic tie-break: the smallest triangle index among the nearest
            face.scatter_reduce_(0, pixel[nearest], tri[nearest], reduce="amin")
        face = torch.where(face < n_tri, face, torch.full_like(face, -1))
        return face.view(b, size, size), zbuf.view(b, size, size)

    def interpolate(self, vertices: torch.Tensor, triangles: torch.Tensor, attributes: torch.Tensor,
                    face_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable perspective-correct interpolation of ``attributes`` at the covered pixels."""
        b, size = vertices.shape[0], self.image_size
        covered = face_index >= 0
        bi, py, px = torch.nonzero(covered, as_tuple=True)
        tri = triangles[face_index[bi, py, px]]                        # [N, 3]
        uv, depth = self._screen(vertices)
        _, bary, _ = _perspective_barycentrics(uv[bi[:, None], tri], depth[bi[:, None], tri],
                                               px.to(uv.dtype) + 0.5, py.to(uv.dtype) + 0.5)
        values = (bary[..., None] * attributes[bi[:, None], tri]).sum(1)   # [N, C]
        image = attributes.new_zeros(b, size, size, attributes.shape[-1])
        image = image.index_put((bi, py, px), values)
        return image.permute(0, 3, 1, 2), covered[:, None].to(attributes.dtype)

    # --- optional pytorch3d backend ----------------------------------------------------------

    def _render_pytorch3d(self, vertices, triangles, attributes):
        from pytorch3d.ops import interpolate_face_attributes
        from pytorch3d.renderer import FoVPerspectiveCameras, MeshRasterizer, RasterizationSettings
        from pytorch3d.structures import Meshes

        # our frame → pytorch3d view space (+X left, +Y up, looking along +Z): (−X, Y, d − Z)
        view = torch.stack([-vertices[..., 0], vertices[..., 1], self.camera_distance - vertices[..., 2]], -1)
        fov = 2 * math.atan(self.image_size / 2 / self.focal)
        cameras = FoVPerspectiveCameras(znear=0.01, zfar=50.0, fov=fov, degrees=False, device=vertices.device)
        settings = RasterizationSettings(image_size=self.image_size, blur_radius=0.0, faces_per_pixel=1)
        meshes = Meshes(verts=view, faces=triangles[None].expand(len(view), -1, -1))
        fragments = MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)
        face_attr = attributes[:, triangles].reshape(-1, 3, attributes.shape[-1])
        image = interpolate_face_attributes(fragments.pix_to_face, fragments.bary_coords, face_attr)[..., 0, :]
        mask = (fragments.pix_to_face[..., 0] >= 0).to(attributes.dtype)
        return image.permute(0, 3, 1, 2), mask[:, None]


def _perspective_barycentrics(tri_uv: torch.Tensor, tri_depth: torch.Tensor, x: torch.Tensor,
                              y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Screen-space barycentrics (coverage test), perspective-correct ones (interpolation), both
    ``[N,3]``, and the depth along the ray of points (x, y) in triangles ``tri_uv [N,3,2]``."""
    a, b, c = tri_uv.unbind(1)

    def edge(p, q, rx, ry):
        return (q[:, 0] - p[:, 0]) * (ry - p[:, 1]) - (q[:, 1] - p[:, 1]) * (rx - p[:, 0])

    area = edge(a, b, c[:, 0], c[:, 1])
    screen = torch.stack([edge(b, c, x, y), edge(c, a, x, y), edge(a, b, x, y)], -1) / area[:, None]
    weighted = screen / tri_depth
    total = weighted.sum(-1, keepdim=True)
    depth = torch.where(area.abs() > 1e-12, 1.0 / total[:, 0], torch.full_like(area, math.inf))
    return screen, weighted / total, depth


def _chunks(candidates: torch.Tensor, count: torch.Tensor, max_pairs: int):
    """Split triangle ids so each chunk expands to at most ``max_pairs`` (triangle, pixel) pairs."""
    if candidates.numel() == 0:
        return
    cumulative = torch.cumsum(count[candidates], 0)
    start = 0
    while start < candidates.numel():
        offset = cumulative[start - 1] if start else 0
        end = int(torch.searchsorted(cumulative, offset + max_pairs, right=True))
        end = max(end, start + 1)
        yield candidates[start:end]
        start = end
