"""The shape prior: aligned crop + 5 landmarks → D3DFR coefficients → 3DMM → render in the crop frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nets.d3dfr import INPUT_SIZE, ReconNet
from ..pipeline.align import d3dfr_crop_matrix, invert_affine, transform_points, warp_affine
from .bfm import ParametricFaceModel
from .renderer import MeshRenderer

PIXEL_CENTRE = 0.5   # projected points put pixel centres at +0.5; the crop matrices at integers


@dataclass
class ShapePriorOutput:
    """Everything the generator and the shape losses need, in the crop frame."""

    render: torch.Tensor        # [B,3,S,S] colour render in [-1,1], background -1
    render_gray: torch.Tensor   # [B,3,S,S] grey-albedo render, same convention
    mask: torch.Tensor          # [B,1,S,S] coverage in [0,1]
    coeffs: torch.Tensor        # [B,257]
    landmarks68: torch.Tensor   # [B,68,2] projected 3DMM landmarks in crop pixels
    crop_matrix: torch.Tensor   # [B,2,3] crop px -> 224 px


class ShapePrior(nn.Module):
    """D3DFR + BFM09 + renderer, batched and differentiable (SPEC §3)."""

    def __init__(self, d3dfr: ReconNet, face_model: ParametricFaceModel, renderer: MeshRenderer | None = None):
        super().__init__()
        self.d3dfr = d3dfr
        self.face_model = face_model
        self.renderer = renderer if renderer is not None else MeshRenderer()

    def forward(self, lq: torch.Tensor, landmarks: torch.Tensor,
                crop_matrix: torch.Tensor | None = None) -> ShapePriorOutput:
        """``lq [B,3,S,S]`` in [-1,1] with its landmarks ``[B,5,2]`` (crop px); ``crop_matrix`` (crop px →
        224 px) skips the fit when the data loader already computed it."""
        size = lq.shape[-1]
        matrix = crop_matrix.float() if crop_matrix is not None else d3dfr_crop_matrix(
            landmarks.float(), self.face_model.lm3d_5, crop_size=size)
        # warped in [-1, 1] as the official wrapper does: the window outside the crop is grey 0.5, not black
        crop = warp_affine(lq.float(), matrix, (INPUT_SIZE, INPUT_SIZE)) * 0.5 + 0.5
        coeffs = self.d3dfr(crop)
        mesh = self.face_model.compute(coeffs)
        # colour and grey renders in one rasterization
        image, mask = self.renderer(mesh.vertices, mesh.triangles, torch.cat([mesh.colors, mesh.gray_colors], -1))
        # the official 3DMM layer clamps the colour render to [0, 255]; the grey render stays unclamped
        image = torch.cat([image[:, :3].clamp(0, 255), image[:, 3:]], 1)
        inverse = invert_affine(matrix)
        back = warp_affine(torch.cat([image / 255.0, mask], 1), inverse, (size, size))
        mask_crop = back[:, 6:7].clamp(0, 1)
        to_signed = lambda x: x * mask_crop * 2 - 1  # noqa: E731
        return ShapePriorOutput(render=to_signed(back[:, :3]), render_gray=to_signed(back[:, 3:6]),
                                mask=mask_crop, coeffs=coeffs,
                                landmarks68=transform_points(mesh.landmarks68 - PIXEL_CENTRE, inverse),
                                crop_matrix=matrix)
