"""Start SGPN's decoder from a pretrained StyleGAN2/GPEN face generator (the paper's generative prior).

SGPN's decoder ``netG`` is a StyleGAN2 synthesis network whose layers concatenate encoder features
(``cat[o, s·f]``), so every layer after 4 px has twice the input channels of a plain StyleGAN2 layer,
and each 8…512 px layer has an AFFB mask conv. :func:`load_pretrained_decoder` copies what has a
counterpart and leaves the rest as initialised. Supported layouts (told apart by their key names):

``gpen``
    GPEN ``FullGenerator`` (yangxy/GPEN, e.g. ``GPEN-BFR-512.pth``, plain state dict): the decoder
    ``generator.*`` has SGPN's concatenated layout, so every synthesis tensor, including the feature
    scales ``noise.weight``, is copied unchanged.
``stylegan2_rosinality``
    rosinality stylegan2-pytorch ``Generator`` (``g_ema`` of a training or converted ``.pt`` file, or a
    plain state dict): ``input.input``, ``conv1``, ``convs.N``, ``to_rgb1``, ``to_rgbs.N``.
``stylegan2_basicsr``
    BasicSR ``StyleGAN2Generator`` (``params_ema``/``params``; also the ``stylegan_decoder.*`` of a
    GFPGAN v1 ``GFPGANv1`` file): the same operations under the names ``constant_input``,
    ``style_conv1``, ``style_convs.N``, ``modulated_conv``.
``stylegan2_clean``
    GFPGAN/BasicSR ``StyleGAN2GeneratorClean`` (also the ``stylegan_decoder.*`` of GFPGAN v1.3/v1.4
    ``GFPGANv1Clean`` files): plain ``nn.Linear`` modulation and pre-scaled conv weights are rescaled to
    the equalised-learning-rate convention, the bias of the un-gained leaky ReLU is divided by √2, and
    the kernels of the upsampling convs are rotated by 180° (bilinear-then-conv equals SGPN's
    transposed conv + [1,3,3,1] blur with the rotated kernel, up to the 1-pixel border).

What is copied: the constant input, every modulated conv (weight, modulation), the activation biases
and the ToRGB layers. For the plain StyleGAN2 layouts the weights of the concatenated-feature input
channels, their modulation rows and their activation biases have no counterpart: the weights are set
to 0 (so that the decoder starts exactly as the pretrained synthesis network, whatever the features)
and the feature scales ``noise.weight`` to 1 (StyleGAN2's additive-noise strengths have another
meaning) so that those weights receive gradients from the first step. Never copied: the mapping MLP
(SGPN maps [z_LQ, z_3D, 3DMM coefficients] with 3 layers, StyleGAN2 maps z with 8), the AFFB mask convs
``convs_mask`` and the encoder ``netE``; they keep their random initialisation.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..zoo.checkpoint_layouts import describe_state_dict
from ..zoo.checkpoints import CheckpointError

logger = logging.getLogger(__name__)

FEATURE_SCALE_INIT = 1.0   # noise.weight of SGPN layers whose source had additive noise (see module docstring)
SOURCE_LAYOUTS = ("gpen", "stylegan2_rosinality", "stylegan2_basicsr", "stylegan2_clean")
# BasicSR module names -> rosinality module names (the canonical naming used below)
_BASICSR_RENAMES = ((r"^constant_input\.weight$", "input.input"), (r"^style_conv1\.", "conv1."),
                    (r"^style_convs\.", "convs."), (r"\.modulated_conv\.", ".conv."))


@dataclass
class DecoderInitReport:
    """What :func:`load_pretrained_decoder` did: the source layout and the SGPN keys set or left alone."""

    layout: str
    copied: list[str] = field(default_factory=list)
    not_copied: list[str] = field(default_factory=list)


def read_generator_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The generator tensors of a ``.pth``/``.pt`` file: ``g_ema`` (rosinality), ``params_ema``/``params``
    (BasicSR) or the plain state dict; a DataParallel ``module.`` prefix is removed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"decoder weights file not found: {path}") from None
    except Exception as err:  # corrupt file, pickled code, wrong format
        raise CheckpointError(f"cannot read decoder weights file {path}: {err}") from None
    for key in ("g_ema", "params_ema", "params"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _detect(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """``(layout name, tensors without the layout's prefix)``, or ``("", {})`` when no layout fits."""
    if "generator.input.input" in state and "generator.conv1.conv.weight" in state:
        return "gpen", _strip(state, "generator.")
    if "input.input" in state and "conv1.conv.weight" in state and "conv1.noise.weight" in state:
        return "stylegan2_rosinality", state
    for prefix in ("", "stylegan_decoder."):
        keys = _strip(state, prefix)
        if "constant_input.weight" in keys and "style_conv1.modulated_conv.weight" in keys:
            return ("stylegan2_clean" if "style_conv1.bias" in keys else "stylegan2_basicsr"), keys
    return "", {}


def _to_canonical(layout: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Synthesis tensors in rosinality names and equalised-learning-rate convention.

    Dropped: the mapping MLP, fixed noise maps, blur buffers (SGPN has its own, identical ones) and,
    except for GPEN, the additive-noise strengths.
    """
    out = {}
    for key, value in state.items():
        if key.startswith(("style.", "style_mlp.", "noises.")) or key.endswith(".kernel"):
            continue
        if layout in ("stylegan2_basicsr", "stylegan2_clean"):
            for pattern, replacement in _BASICSR_RENAMES:
                key = re.sub(pattern, replacement, key)
        if layout != "gpen" and re.match(r"(conv1|convs\.\d+)\.(noise\.)?weight$", key):
            continue
        if layout == "stylegan2_clean":
            value = _clean_to_equalised(key, value)
            key = re.sub(r"^(conv1|convs\.\d+)\.bias$", r"\1.activate.bias", key)
        out[key] = value
    return out


def _clean_to_equalised(key: str, value: torch.Tensor) -> torch.Tensor:
    """One ``StyleGAN2GeneratorClean`` tensor (already renamed) in rosinality's convention."""
    if key.endswith("conv.modulation.weight"):
        return value * math.sqrt(value.shape[1])                 # nn.Linear -> EqualLinear (lr_mul 1)
    if key.endswith("conv.weight"):
        value = value * math.sqrt(value[0, 0].numel())          # pre-scaled -> scaled at run time
        match = re.match(r"convs\.(\d+)\.", key)
        return value.flip(-1, -2) if match and int(match.group(1)) % 2 == 0 else value   # upsampling conv
    if key.endswith(".bias") and value.ndim == 4 and not key.startswith("to_rgb"):
        return value.flatten() / math.sqrt(2.0)                 # leaky(√2·o + b) = √2·leaky(o + b/√2)
    return value


# the input-channel dimension of the tensors whose layer input SGPN widens by concatenation (and of the
# activation bias, whose output SGPN widens): SGPN's is the source's or twice it
_WIDENED_DIM = {"conv.weight": 2, "modulation.weight": 0, "modulation.bias": 0, "activate.bias": 0}


def _copy_into(target: torch.Tensor, source: torch.Tensor, key: str) -> None:
    """Copy ``source`` into ``target`` (or its leading half where SGPN's layer is twice as wide); conv weights
    are rescaled for the wider fan-in, the extra input channels zeroed, the extra activation biases 0."""
    dim = next((d for suffix, d in _WIDENED_DIM.items() if key.endswith(suffix)), None)
    expected = list(source.shape)
    if dim is not None and target.shape[dim] == 2 * source.shape[dim]:
        expected[dim] *= 2
    if list(target.shape) != expected:
        raise ValueError(f"{key}: decoder tensor {tuple(source.shape)} does not fit SGPN's {tuple(target.shape)}")
    if key.endswith("conv.weight"):                             # [1, out, in, k, k]
        target.zero_()
        target[:, :, : source.shape[2]] = source * math.sqrt(target.shape[2] / source.shape[2])
    elif key.endswith("activate.bias"):
        target.zero_()
        target[: source.shape[0]] = source
    else:                                                       # modulation rows of the new channels: as initialised
        target[tuple(slice(0, n) for n in source.shape)] = source


def load_pretrained_decoder(generator: nn.Module, path: str | os.PathLike) -> DecoderInitReport:
    """Initialise ``generator.netG`` (an :class:`~sgpn_arch.nets.generator.SGPNGenerator`) from a pretrained
    StyleGAN2/GPEN generator file (layouts: module docstring).

    Raises :class:`~sgpn_arch.zoo.checkpoints.CheckpointError` naming the file and its layout when the file is
    no supported generator or its resolution, widths or style width differ from ``generator``'s.
    """
    state = read_generator_state(path)
    layout, tensors = _detect(state)
    if not layout:
        raise CheckpointError(f"{path} is {describe_state_dict(state)}, not a StyleGAN2/GPEN generator; "
                              f"decoder_load_path takes these layouts: {', '.join(SOURCE_LAYOUTS)}")
    source = _to_canonical(layout, tensors)
    target = generator.netG.state_dict()
    n_src = 1 + max((int(m.group(1)) for k in source if (m := re.match(r"convs\.(\d+)\.", k))), default=-1)
    n_tgt = 1 + max(int(m.group(1)) for k in target if (m := re.match(r"convs\.(\d+)\.", k)))
    if n_src != n_tgt:
        raise CheckpointError(f"{path} ({layout}) is a {2 ** (n_src // 2 + 2)} px generator; network_g.size is "
                              f"{2 ** (n_tgt // 2 + 2)}: use a decoder of the size being trained")
    report = DecoderInitReport(layout)
    with torch.no_grad():
        for key, value in source.items():
            if key not in target:
                continue
            try:
                _copy_into(target[key], value.to(target[key].dtype), key)
            except ValueError as err:
                raise CheckpointError(f"{path} ({layout}) does not fit network_g: {err}. Set network_g's "
                                      "channel_multiplier, narrow and style_dim to the decoder's") from None
            report.copied.append(f"netG.{key}")
        if layout != "gpen":
            for key, value in target.items():
                if key.endswith("noise.weight"):
                    value.fill_(FEATURE_SCALE_INIT)
        generator.netG.load_state_dict(target)
    copied = set(report.copied)
    report.not_copied = [k for k in generator.state_dict() if k not in copied and not k.endswith(".kernel")]
    logger.info("decoder initialised from %s (%s layout): %d tensors copied; not copied (kept as initialised): "
                "encoder netE, mapping netG.mlp, AFFB netG.*.convs_mask%s", path, layout, len(report.copied),
                "" if layout == "gpen" else ", concatenated-feature channels (zero weights, feature scales 1)")
    return report
