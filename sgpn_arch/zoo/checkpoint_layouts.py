"""Which network a state dict belongs to, told from its key names alone (no file names, no loading into a model).

Used to recognise the members of the official release bundle, to list only fitting files in the front ends'
dropdowns, and to name a foreign checkpoint (GFPGAN, CodeFormer, ...) in error messages instead of printing a
key mismatch. Every layout is a few keys that its network always has; the first layout that matches wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """A checkpoint family: ``name`` (stable id), ``description`` (for people), ``sgpn_role`` (zoo name or None)."""

    name: str
    description: str
    required: frozenset[str]
    prefixes: tuple[str, ...] = ()        # at least one key must start with each of these
    excluded: frozenset[str] = frozenset()
    sgpn_role: str | None = None          # the weights-zoo entry this file can serve ("sgpn", "d3dfr")

    def matches(self, keys: frozenset[str]) -> bool:
        return (self.required <= keys and not (self.excluded & keys)
                and all(any(k.startswith(p) for k in keys) for p in self.prefixes))


def _layout(name: str, description: str, required: Iterable[str], prefixes: Iterable[str] = (),
            excluded: Iterable[str] = (), sgpn_role: str | None = None) -> Layout:
    return Layout(name, description, frozenset(required), tuple(prefixes), frozenset(excluded), sgpn_role)


LAYOUTS: tuple[Layout, ...] = (
    _layout("sgpn_generator", "SGPN generator (FullGenerator_SGPN, official sgpn.pth layout)",
            ["netE.ecd0.0.0.weight", "netG.mlp.1.weight", "netG.conv1.conv.weight"], sgpn_role="sgpn"),
    _layout("d3dfr", "D3DFR face reconstruction network (ResNet-50 ReconNet, d3dfr_finetune_ours.pth layout)",
            ["backbone.conv1.weight", "backbone.layer4.2.bn3.running_var", "final_layers.0.weight"],
            sgpn_role="d3dfr"),
    _layout("stylegan2_discriminator", "StyleGAN2 discriminator (rosinality layout, as SGPN's)",
            ["convs.0.0.weight", "final_conv.0.weight", "final_linear.0.weight"]),
    _layout("gfpgan", "GFPGAN v1.2/v1.3/v1.4 generator (GFPGANv1Clean)",
            ["conv_body_first.weight", "final_linear.weight"], prefixes=["stylegan_decoder.", "condition_scale."]),
    _layout("gfpgan_v1", "GFPGAN v1 generator (GFPGANv1, needs CUDA ops)",
            ["conv_body_first.0.weight", "final_linear.weight"], prefixes=["stylegan_decoder.", "condition_scale."]),
    _layout("codeformer", "CodeFormer",
            ["position_emb", "quantize.embedding.weight"], prefixes=["ft_layers.", "idx_pred_layer."]),
    _layout("restoreformer", "RestoreFormer / RestoreFormer++",
            ["quantize.embedding.weight", "encoder.conv_in.weight", "decoder.conv_out.weight"],
            excluded=["position_emb"]),
    _layout("gpen", "GPEN generator (e.g. GPEN-BFR-512)",
            ["ecd0.0.0.weight", "final_linear.0.weight"], prefixes=["generator.style.", "generator.convs."]),
    _layout("stylegan2_rosinality", "StyleGAN2 generator (rosinality stylegan2-pytorch layout)",
            ["style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight"]),
    _layout("stylegan2_clean", "StyleGAN2 generator (BasicSR/GFPGAN StyleGAN2GeneratorClean)",
            ["style_mlp.1.weight", "constant_input.weight", "style_conv1.weight"]),
    _layout("realesrgan", "Real-ESRGAN / ESRGAN RRDBNet super-resolution network",
            ["conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight"]),
    _layout("retinaface", "RetinaFace face detector (facexlib)",
            ["ClassHead.0.conv1x1.weight", "BboxHead.0.conv1x1.weight"]),
    _layout("arcface", "ArcFace ResNet identity network",
            ["conv1.weight", "bn1.weight", "fc5.weight"]),
)

LAYOUTS_BY_NAME = {layout.name: layout for layout in LAYOUTS}


def identify_layout(state_dict: Iterable[str]) -> Layout | None:
    """The :class:`Layout` whose keys ``state_dict`` (a state dict or its key names) has (a DataParallel ``module.``
    prefix is ignored), else None."""
    keys = frozenset(k.removeprefix("module.") for k in state_dict)
    for layout in LAYOUTS:
        if layout.matches(keys):
            return layout
    return None


def describe_state_dict(state_dict: Mapping[str, object]) -> str:
    """One phrase naming what ``state_dict`` is, e.g. "a GFPGAN v1.2/v1.3/v1.4 generator (GFPGANv1Clean) checkpoint"."""
    layout = identify_layout(state_dict)
    if layout is not None:
        return f"a {layout.description} checkpoint"
    sample = ", ".join(list(state_dict)[:3])
    return f"a checkpoint of an unrecognised network ({len(state_dict)} tensors, keys like {sample})"
