"""Load ``path.pretrain_network_*`` files whatever their wrapping: official plain state dicts (``sgpn.pth``,
``d3dfr_finetune_ours.pth``), BasicSR checkpoints (``params`` / ``params_ema``) and DataParallel prefixes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from sgpn_arch.zoo.checkpoint_layouts import describe_state_dict
from sgpn_arch.zoo.checkpoints import CheckpointError

logger = logging.getLogger("basicsr")

BASICSR_KEYS = ("params", "params_ema")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The object stored in a ``.pth``/``.safetensors`` file (``weights_only``), with one message when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights file not found: {path} (check path.pretrain_network_* in the options)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, pickled code
        raise CheckpointError(f"cannot read pretrained weights file {path}: {err}") from None


def select_state_dict(checkpoint: dict, param_key: str | None, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, where it came from)``: ``param_key`` when the file has it, else the other BasicSR key,
    else the file itself when it is a plain state dict (official files); ``module.`` prefixes removed."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{source} does not hold a state dict")
    wanted = [param_key] if param_key else []
    wanted += [key for key in BASICSR_KEYS if key not in wanted]
    for key in wanted:
        if isinstance(checkpoint.get(key), dict):
            state, found = checkpoint[key], f"param key '{key}'"
            break
    else:
        if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            raise CheckpointError(f"{source} has neither {' nor '.join(repr(k) for k in wanted)} nor a plain state "
                                  f"dict (top-level keys: {sorted(checkpoint)[:8]})")
        state, found = checkpoint, "plain state dict"
    if param_key and not found.endswith(f"'{param_key}'"):
        logger.info("%s has no '%s': loading its %s", source, param_key, found)
    return {k.removeprefix("module."): v for k, v in state.items()}, found


def load_pretrained(net: nn.Module, path: str | os.PathLike, param_key: str | None, strict: bool = True) -> str:
    """Load ``path`` into ``net`` (bare module); returns what was loaded (for the log).

    A file of another network or configuration raises :class:`CheckpointError` naming the file, what it
    is (:func:`~sgpn_arch.zoo.checkpoint_layouts.describe_state_dict`) and the first mismatches.
    """
    state, found = select_state_dict(read_checkpoint(path), param_key, str(path))
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape_errors = [f"{k}: file {tuple(v.shape)} vs network {tuple(own[k].shape)}"
                    for k, v in state.items() if k in own and own[k].shape != v.shape]
    if shape_errors or (strict and (missing or unexpected)):
        detail = "; ".join(shape_errors[:2] + [f"missing {missing[:3]}"] * bool(missing)
                           + [f"unexpected {unexpected[:3]}"] * bool(unexpected))
        raise CheckpointError(f"{path} ({found}) is {describe_state_dict(state)}, which does not fit "
                              f"{type(net).__name__} as configured: {detail}{_config_hint(net, state)}")
    net.load_state_dict(state, strict=False)
    if missing or unexpected:
        logger.warning("%s loaded with strict_load false: %d missing, %d unexpected keys", path,
                       len(missing), len(unexpected))
    logger.info("Loading %s from %s (%s)", type(net).__name__, path, found)
    return found


def _config_hint(net: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """For SGPN generator files of another width: the ``network_g`` values that would fit."""
    config_from = getattr(type(net), "config_from_state_dict", None)
    if config_from is None:
        return ""
    try:
        config = config_from(state)
    except (ValueError, KeyError, IndexError):
        return ""
    return f". The file's generator has network_g {config}"
