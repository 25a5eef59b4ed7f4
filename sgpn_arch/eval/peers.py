"""Peer face-restoration networks benchmarked against SGPN: GFPGAN v1.4, GPEN-BFR-512 and CodeFormer.

Every peer is returned as a module whose ``forward(x)`` takes ``[B,3,512,512]`` RGB in [-1, 1] and
returns only the restored image (same shape, not clamped), set up as in the peer's official inference
script. ``weights=None`` gives random initialisation (speed benchmarks); a path loads the official
checkpoint strictly (GFPGAN and CodeFormer: BasicSR ``params_ema`` wrapper; GPEN: plain state dict).
GFPGAN and CodeFormer come from the optional ``bench`` extra (``gfpgan``, ``spandrel-extra-arches``).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..zoo.checkpoints import load_state_dict_file, load_strict
from ..zoo.weights import WeightSpec, register_weight, resolve_weights

logger = logging.getLogger(__name__)

CODEFORMER_FIDELITY = 0.5   # CodeFormer's ``w``: 0 = codebook only, 1 = closest to the input


class ImageOnly(nn.Module):
    """Calls ``net(x, **call_kwargs)`` and keeps the first output (the image) of the returned tuple."""

    def __init__(self, net: nn.Module, **call_kwargs):
        super().__init__()
        self.net = net
        self.call_kwargs = call_kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, **self.call_kwargs)[0]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.call_kwargs.items())


def _require(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"this peer needs {package} (pip install 'sgpn-restore[bench]'): {err}") from None


def _build_gfpgan() -> tuple[nn.Module, nn.Module]:
    import basicsr_plugin.compat  # noqa: F401  (must run before gfpgan imports basicsr)

    arch = _require("gfpgan.archs.gfpganv1_clean_arch", "gfpgan")
    net = arch.GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                             fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                             sft_half=True)
    # GFPGANer: ``gfpgan(face, return_rgb=False, weight=w)[0]``, fresh decoder noise on every call
    return ImageOnly(net, return_rgb=False, randomize_noise=True), net


def _build_gpen() -> tuple[nn.Module, nn.Module]:
    from ..nets.gpen import GPENGenerator

    net = GPENGenerator(size=512, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1)
    return net, net


def _build_codeformer() -> tuple[nn.Module, nn.Module]:
    arch = _require("spandrel_extra_arches.architectures.CodeFormer", "spandrel-extra-arches")
    net = arch.CodeFormer(dim_embd=512, n_head=8, n_layers=9, codebook_size=1024,
                          connect_list=["32", "64", "128", "256"])
    # inference_codeformer.py: ``net(face, w=w, adain=True)[0]``; spandrel's ``weight`` is ``w``, adain is on
    return ImageOnly(net, weight=CODEFORMER_FIDELITY), net


@dataclass(frozen=True)
class PeerSpec:
    """One peer: its zoo weight and a builder returning ``(image-only module, module with the official keys)``."""

    name: str
    weight: WeightSpec
    build: Callable[[], tuple[nn.Module, nn.Module]]


PEERS: dict[str, PeerSpec] = {spec.name: spec for spec in (
    PeerSpec("gfpgan", register_weight(WeightSpec(
        "gfpgan_v1.4", "GFPGANv1.4.pth", "GFPGAN v1.4 (GFPGANv1Clean)",
        url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth")), _build_gfpgan),
    PeerSpec("gpen", register_weight(WeightSpec(
        "gpen_bfr512", "GPEN-BFR-512.pth", "GPEN-BFR-512 generator",
        url="https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-512.pth")), _build_gpen),
    PeerSpec("codeformer", register_weight(WeightSpec(
        "codeformer", "codeformer.pth", "CodeFormer v0.1.0",
        url="https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth")), _build_codeformer),
)}


def peer_weight_names() -> dict[str, str]:
    """``{peer name: weight file name}`` of every peer."""
    return {name: spec.weight.filename for name, spec in PEERS.items()}


def _spec(name: str) -> PeerSpec:
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose one of {sorted(PEERS)}")
    return PEERS[name]


def build_peer_network(name: str, weights: str | os.PathLike | None = None) -> nn.Module:
    """Peer ``name`` in eval mode: random init with ``weights=None``, else the checkpoint at ``weights``.

    Raises :class:`~sgpn_arch.zoo.checkpoints.CheckpointError` when the file is unreadable or its keys or
    shapes are not the official layout (the message names the mismatching keys).
    """
    spec = _spec(name)
    model, official = spec.build()
    if weights is not None:
        load_strict(official, load_state_dict_file(weights), spec.weight.description, str(weights))
        logger.info("loaded %s from %s", spec.weight.description, weights)
    return model.eval()


def load_peer(name: str, weights: str | os.PathLike | None = None, allow_download: bool = True) -> nn.Module:
    """Peer ``name`` with its official weights, resolved through the model zoo.

    Raises :class:`~sgpn_arch.zoo.weights.WeightsError` when the file is neither given, found nor downloadable.
    """
    return build_peer_network(name, resolve_weights(_spec(name).weight.name, weights, allow_download))
