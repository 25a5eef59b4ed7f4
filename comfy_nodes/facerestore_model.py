"""SGPN behind the ``FACERESTORE_MODEL`` interface that facerestore_cf-style nodes pass around.

Those nodes align every face with facexlib to the FFHQ template at 512 px, normalise it to RGB in [-1, 1],
call ``model(crop, w=...)`` (or ``weight=...``, or no keyword) and read ``[0]``: the restored crop batch in
[-1, 1], which they paste back themselves. SGPN also needs the crop's five landmarks: in an FFHQ-aligned crop
they are the FFHQ template points. Weights trained on another template (the official ones: ``sgpn``) get the
crop re-aligned to it, restored, and warped back to the FFHQ frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sgpn_arch.nets.model import SGPN
from .sgpn_arch.pipeline.align import get_template, invert_affine, similarity_transform, warp_affine

CONSUMER_TEMPLATE = "ffhq"   # facexlib FaceRestoreHelper's alignment, used by every FACERESTORE_MODEL consumer


class SGPNFaceRestoreModel(nn.Module):
    """``forward(crops [B,3,S,S] in [-1,1], **ignored) -> (restored [B,3,S,S],)``; shares the loader's network."""

    def __init__(self, network: SGPN, template: str):
        super().__init__()
        self.network = network
        size = network.size
        consumer = get_template(CONSUMER_TEMPLATE, size)
        matrix = similarity_transform(consumer, get_template(template, size))
        self.realign = template != CONSUMER_TEMPLATE
        # where the crop's landmarks (the FFHQ points) are after re-alignment: the template up to the fit's residual
        landmarks = consumer @ matrix[:, :2].T + matrix[:, 2]
        self.register_buffer("to_model", torch.from_numpy(matrix)[None], persistent=False)
        self.register_buffer("landmarks", torch.from_numpy(landmarks.astype("float32"))[None], persistent=False)

    def forward(self, crops: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor]:
        """Restore FFHQ-aligned crops. ``w``/``weight`` (CodeFormer's fidelity) have no SGPN meaning: ignored."""
        size = self.network.size
        with torch.inference_mode():
            x = crops.to(self.to_model.device, torch.float32)
            if x.shape[-2:] != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            batch = x.shape[0]
            if self.realign:
                x = warp_affine(x, self.to_model.expand(batch, -1, -1), (size, size))
            out = self.network.restore(x, self.landmarks.expand(batch, -1, -1)).restored
            if self.realign:
                out = warp_affine(out, invert_affine(self.to_model).expand(batch, -1, -1), (size, size))
            if out.shape[-2:] != crops.shape[-2:]:
                out = F.interpolate(out, size=crops.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        return (out.clamp(-1, 1).to(crops.dtype),)
