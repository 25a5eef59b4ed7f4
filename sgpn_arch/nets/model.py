"""The SGPN restoration chain: aligned LQ crop + 5 landmarks → 3D shape prior → restored crop."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from ..face3d.bfm import ParametricFaceModel
from ..face3d.renderer import MeshRenderer
from ..face3d.shape_prior import ShapePrior
from ..pipeline.compilation import CompiledInference, CompiledRunner, compile_backend, compile_devices
from ..zoo.checkpoint_layouts import describe_state_dict
from ..zoo.checkpoints import CheckpointError, check_layout, load_state_dict_file, load_strict
from .d3dfr import ReconNet
from .generator import SGPNGenerator

WeightsSource = str | os.PathLike | dict


@dataclass
class SGPNOutput:
    """Batched result of :meth:`SGPN.restore` (images ``[B,3,S,S]`` in [-1, 1])."""

    restored: torch.Tensor
    render: torch.Tensor
    coeffs: torch.Tensor
    mask: torch.Tensor


class SGPN(nn.Module):
    """Shape prior (D3DFR + 3DMM + renderer) followed by the SGPN generator."""

    def __init__(self, generator: SGPNGenerator, shape_prior: ShapePrior):
        super().__init__()
        self.generator = generator
        self.shape_prior = shape_prior
        self.generator_dtype = torch.float32
        self.compiled_generator: CompiledRunner | None = None

    @property
    def size(self) -> int:
        """Side of the aligned crops the generator works on (512 for the official model)."""
        return self.generator.size

    def forward(self, lq: torch.Tensor, landmarks: torch.Tensor) -> SGPNOutput:
        prior = self.shape_prior(lq, landmarks)
        dtype = self.generator_dtype
        generator = self.compiled_generator or self.generator
        restored = generator(lq.to(dtype), prior.render.to(dtype), prior.coeffs.to(dtype))
        restored = restored.float().clamp(-1, 1)
        return SGPNOutput(restored=restored, render=prior.render, coeffs=prior.coeffs, mask=prior.mask)

    @torch.inference_mode()
    def restore(self, lq: torch.Tensor, landmarks: torch.Tensor) -> SGPNOutput:
        """Restore aligned crops ``lq [B,3,S,S]`` in [-1, 1] with their landmarks ``[B,5,2]`` (crop px)."""
        if lq.ndim != 4 or lq.shape[1] != 3 or lq.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected aligned crops of shape [B,3,{self.size},{self.size}], got {list(lq.shape)}")
        if landmarks.shape != (lq.shape[0], 5, 2):
            raise ValueError(f"expected landmarks of shape [{lq.shape[0]},5,2], got {list(landmarks.shape)}")
        device = next(self.parameters()).device
        return self(lq.to(device, torch.float32), landmarks.to(device, torch.float32))

    def accelerate(self, compile: bool | str | None = None, dtype: torch.dtype | None = None) -> "SGPN":
        """Inference speed options; outputs stay equal to the plain path within float tolerance.

        ``compile``: run the generator compiled (:mod:`sgpn_arch.pipeline.compilation`: an AOTInductor package built
        once per machine and kept on disk, eager if compiling fails): ``"auto"`` where it pays (CPU;
        ``SGPN_COMPILE=0`` turns it off, ``SGPN_COMPILE=openvino`` makes it ``"openvino"``), ``True`` on every
        device, ``False`` never, ``"openvino"`` on the CPU through OpenVINO (optional,
        :mod:`sgpn_arch.pipeline.openvino_inference`: faster, more memory); ``None`` keeps the current choice.
        The first compiled call on a machine builds the package (~40 s on 2 CPU cores); later ones, in any
        process, load it in milliseconds. It reads the current weights on every call.
        ``dtype``: run the generator in ``torch.float16``/``torch.bfloat16`` (GPU); the shape prior stays in
        float32.
        """
        if dtype is not None:
            if dtype not in (torch.float32, torch.float16, torch.bfloat16):
                raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
            self.generator.to(dtype)
            self.generator_dtype = dtype
        if compile is not None:
            devices, current = compile_devices(compile), self.compiled_generator
            runner = CompiledInference
            if compile_backend(compile) == "openvino":
                from ..pipeline.openvino_inference import OpenVINOInference as runner   # optional dependency
            if devices == ():
                self.compiled_generator = None
            elif type(current) is not runner or current.devices != devices:   # a new dtype: same runner
                self.compiled_generator = runner(self.generator, devices)
        return self


class IdentitySGPN(nn.Module):
    """Stands in for SGPN and returns the LQ crop as the restoration: measures and tests the pipeline around the
    network (crop, paste-back) on its own."""

    size = 512

    def accelerate(self, **options) -> "IdentitySGPN":
        return self

    def restore(self, lq: torch.Tensor, landmarks: torch.Tensor) -> SGPNOutput:
        return SGPNOutput(restored=lq.clone(), render=-torch.ones_like(lq), coeffs=torch.zeros(len(lq), 257),
                          mask=torch.zeros_like(lq[:, :1]))


def _state_dict(source: WeightsSource) -> tuple[dict, str]:
    if isinstance(source, dict):
        return source, "the given state dict"
    return load_state_dict_file(source), str(source)


def build_sgpn(generator: WeightsSource, d3dfr: WeightsSource, bfm_folder: str | os.PathLike,
               device: str | torch.device = "cpu", renderer_backend: str = "auto") -> SGPN:
    """Build the full chain from weight files (or state dicts) and a BFM folder, in eval mode."""
    gen_state, gen_source = _state_dict(generator)
    check_layout(gen_state, "sgpn_generator", "the SGPN generator (sgpn.pth)", gen_source)
    try:
        config = SGPNGenerator.config_from_state_dict(gen_state)
    except ValueError:
        raise CheckpointError(f"{gen_source} is {describe_state_dict(gen_state)}, not the SGPN generator; "
                              "pass the SGPN generator weights (sgpn.pth)") from None
    gen = SGPNGenerator(**config)
    load_strict(gen, gen_state, "SGPN generator", gen_source)
    recon = ReconNet()
    d3dfr_state, d3dfr_source = _state_dict(d3dfr)
    check_layout(d3dfr_state, "d3dfr", "the D3DFR network (d3dfr_finetune_ours.pth)", d3dfr_source)
    load_strict(recon, d3dfr_state, "D3DFR ResNet-50 (d3dfr_finetune_ours.pth)", d3dfr_source)
    prior = ShapePrior(recon, ParametricFaceModel.from_folder(bfm_folder), MeshRenderer(backend=renderer_backend))
    return SGPN(gen, prior).eval().to(device)
