"""Reading network weights from official, BasicSR and safetensors files; writing random test weights."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net_recon")  # net_recon: Deep3DFaceRecon


class CheckpointError(ValueError):
    """A weights file that is missing, unreadable or not the network it should be."""


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.pth``/``.pt``/``.ckpt`` (``weights_only=True``) or ``.safetensors``.

    BasicSR wrappers (``params_ema`` preferred, then ``params``) are unwrapped and a DataParallel
    ``module.`` prefix is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, pickle with code objects, wrong format
        raise CheckpointError(_unreadable(path, err)) from None
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def is_safetensors_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds safetensors data (an 8-byte header length, then a JSON header), whatever its name."""
    with open(path, "rb") as fin:
        head = fin.read(9)
    return len(head) == 9 and int.from_bytes(head[:8], "little") > 0 and head[8:9] == b"{"


def state_dict_keys(path: str | os.PathLike) -> list[str]:
    """The key names of the state dict in ``path`` without reading its tensors (safetensors header, memory-mapped
    torch zip); BasicSR wrappers unwrapped, ``module.`` removed. Raises :class:`CheckpointError`."""
    path = Path(path)
    try:
        if is_safetensors_file(path):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                keys = list(handle.keys())
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
            for key in WRAPPER_KEYS:
                if isinstance(state, dict) and isinstance(state.get(key), dict):
                    state = state[key]
                    break
            if not isinstance(state, dict):
                raise CheckpointError(f"{path} does not hold a state dict")
            keys = list(state)
    except CheckpointError:
        raise
    except Exception as err:  # damaged file, pickle with code objects, not a checkpoint
        raise CheckpointError(_unreadable(path, err)) from None
    return [k.removeprefix("module.") for k in keys]


def _unreadable(path: Path, err: Exception) -> str:
    """Why ``path`` could not be loaded: a text file saved in place of the weights, or the loader's reason."""
    with open(path, "rb") as fin:
        head = fin.read(512)
    if head and b"\x00" not in head:
        try:
            first = head.decode("utf-8").strip().splitlines()[0][:60] if head.strip() else ""
        except UnicodeDecodeError:
            first = None
        if first is not None:
            kind = ("a Git LFS pointer (git lfs pull fetches the file)" if first.startswith("version https://git-lfs")
                    else "an HTML page (a failed or login-walled download?)" if first.lower().startswith(("<!doctype",
                                                                                                        "<html"))
                    else f"a text file starting {first!r}")
            return f"{path} is {kind}, not a weights file. Download the weights again or check the path."
    reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return f"cannot read weights file {path}: {reason}. Re-download it or check the path."


def check_layout(state_dict: dict[str, torch.Tensor], expected: str, what: str, source: str) -> None:
    """Raise :class:`CheckpointError` naming the network when ``state_dict`` is recognisably not ``expected``.

    ``expected`` is a :mod:`.checkpoint_layouts` name (``"sgpn_generator"``, ``"d3dfr"``); ``what`` says in
    words what was asked for. Unrecognised state dicts pass (the strict load reports them).
    """
    from .checkpoint_layouts import identify_layout

    layout = identify_layout(state_dict)
    if layout is not None and layout.name != expected:
        raise CheckpointError(f"{source} holds the {layout.description}, not {what}; "
                              "pass the SGPN release files (sgpn.pth, d3dfr_finetune_ours.pth)")


def load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str, source: str) -> None:
    """``load_state_dict(strict=True)`` with one readable error naming the file and the mismatch."""
    from .checkpoint_layouts import describe_state_dict

    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        detail = str(err).split("\n\t", 1)[-1][:600]
        raise CheckpointError(f"{source} is not a {what} checkpoint in the official layout: it is "
                              f"{describe_state_dict(state_dict)} ({detail})") from None


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write a state dict atomically (``.safetensors`` or torch pickle by suffix)."""
    from ..pipeline.image_io import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:     # the finished file gets the mode the user's umask gives (e.g. 0644)
        if path.suffix == ".safetensors":    # save_file would recreate the file 0600: write its bytes instead
            from safetensors.torch import save
            tmp.write_bytes(save({k: v.contiguous() for k, v in state_dict.items()}))
        else:
            torch.save(state_dict, tmp)
    return path


# Generator widths of the generated-weight presets: "official" is the released model's shape.
PRESETS = {
    "official": dict(size=512, channel_multiplier=2, narrow=1.0, style_dim=512, code_dim=256),
    "tiny": dict(size=512, channel_multiplier=2, narrow=0.125, style_dim=64, code_dim=32),
}


def randomize_generator_(generator: torch.nn.Module, seed: int) -> None:
    """Give every feature-injection weight a non-zero value so random weights exercise the fusion path."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in generator.named_parameters():
        if name.endswith("noise.weight"):
            param.data.copy_(0.2 + 0.1 * torch.rand(1, generator=gen))


def randomize_d3dfr_(d3dfr: torch.nn.Module, seed: int) -> None:
    """Small random heads so coefficients vary with the input while staying face-like."""
    gen = torch.Generator().manual_seed(seed)
    for head in d3dfr.final_layers:
        head.weight.data.copy_(torch.randn(head.weight.shape, generator=gen) * 5e-5)


def write_random_checkpoints(folder: str | os.PathLike, preset: str = "official", seed: int = 0,
                             suffix: str = ".pth") -> dict[str, Path]:
    """Write randomly initialised SGPN generator and D3DFR weights in the official key layout.

    Returns ``{"sgpn": path, "d3dfr": path}``. Used by tests and by ``sgpn demo``; the outputs of
    such networks are not restorations.
    """
    from ..nets.d3dfr import ReconNet
    from ..nets.generator import SGPNGenerator

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    torch.manual_seed(seed)
    generator = SGPNGenerator(**PRESETS[preset])
    randomize_generator_(generator, seed)
    d3dfr = ReconNet()
    randomize_d3dfr_(d3dfr, seed)
    folder = Path(folder)
    return {"sgpn": save_state_dict(generator.state_dict(), folder / f"sgpn_{preset}{suffix}"),
            "d3dfr": save_state_dict(d3dfr.state_dict(), folder / f"d3dfr_random{suffix}")}
