"""Start-up validation of an SGPN options file: every unknown or misspelled key is named (with the closest
known key), required keys and dataset folders are checked, before anything trains.

BasicSR itself ignores unknown keys (a typo in ``loss_weight`` silently disables a loss, one in a ``path``
key silently trains from scratch) and reports missing ones as bare ``KeyError``s. :func:`check_options`
walks the whole tree; :class:`~basicsr_plugin.models.SGPNModel` runs it when it is built, and
:func:`check_options_file` runs it on a YAML file before BasicSR reads it.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Mapping

import yaml

from . import compat  # noqa: F401  (before basicsr)
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY  # noqa: E402


class OptionsError(KeyError):
    """An options file with an unknown, misspelled or missing key (a ``KeyError``, as BasicSR's own)."""

    def __str__(self) -> str:          # KeyError would print the message in quotes
        return str(self.args[0])


TOP_KEYS = {"name", "model_type", "scale", "num_gpu", "manual_seed", "datasets", "network_g", "network_d",
            "network_d3dfr", "shape_prior", "path", "train", "val", "logger", "dist_params", "find_unused_parameters"}
# added by BasicSR: parse_options (is_train ... auto_resume), train_pipeline/test_pipeline (root_path)
RUNTIME_KEYS = {"is_train", "dist", "rank", "world_size", "auto_resume", "root_path"}
PATH_KEYS = ({f"{kind}_{net}" for kind in ("pretrain_network", "param_key", "strict_load") for net in ("g", "d", "d3dfr")}
             | {"resume_state", "ignore_resume_networks"})
PATH_RUNTIME_KEYS = {"experiments_root", "models", "training_states", "log", "visualization", "results_root"}
LOGGER_KEYS = {"print_freq", "save_checkpoint_freq", "use_tb_logger", "wandb", "keep_checkpoints"}
WANDB_KEYS = {"project", "resume_id"}
VAL_KEYS = {"val_freq", "save_img", "suffix", "metrics", "pbar"}
DIST_KEYS = {"backend", "port"}
METRIC_KEYS = {
    "calculate_psnr": {"crop_border", "input_order", "test_y_channel"},
    "calculate_ssim": {"crop_border", "input_order", "test_y_channel"},
    "calculate_niqe": {"crop_border", "input_order", "convert_to"},
    "calculate_lpips": {"crop_border", "weights", "backbone_weights", "device"},
    "calculate_identity_deg": {"weights", "device"},
    "calculate_lmd": {"weights", "device"},
    "calculate_fid_ffhq": {"stats", "weights", "device", "batch_size"},
}
PAIRED_DATASET_KEYS = {"name", "type", "phase", "scale", "dataroot_gt", "dataroot_lq", "meta_info_file", "io_backend",
                       "filename_tmpl", "gt_size", "use_hflip", "use_rot", "mean", "std"}
REQUIRED_TRAIN = {"": ("name", "model_type", "datasets", "network_g", "path", "train", "logger"),
                  "train": ("optim_g", "scheduler", "total_iter"), "logger": ("print_freq", "save_checkpoint_freq")}
REQUIRED_TEST = {"": ("name", "model_type", "datasets", "network_g", "path", "val"), "val": ("metrics",)}


def unknown_keys_message(opt: Mapping, allowed: set[str], where: str) -> str:
    """``""`` when every key of ``opt`` is in ``allowed``, else one message naming each unknown key and
    the known key it most resembles."""
    parts = []
    for key in sorted(set(opt) - allowed, key=str):
        close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
        parts.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    if not parts:
        return ""
    return (f"unknown option{'s' * (len(parts) > 1)} in {where}: {', '.join(parts)}; "
            f"known options there: {', '.join(sorted(map(str, allowed)))}")


def _signature_keys(factory) -> set[str] | None:
    """Keyword arguments ``factory`` accepts, or None when it takes ``**kwargs`` (cannot be checked)."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name not in ("self", "optimizer", "params")}


def _check_typed(opt: Mapping, where: str, factory, errors: list[str], extra: set[str] = frozenset()) -> None:
    keys = _signature_keys(factory)
    if keys is not None:
        message = unknown_keys_message(opt, keys | {"type"} | set(extra), where)
        if message:
            errors.append(message)


def _registered(registry, name: str, where: str, errors: list[str]):
    try:
        return registry.get(name)
    except KeyError:
        close = difflib.get_close_matches(str(name), list(registry._obj_map), n=1)
        errors.append(f"{where}.type '{name}' is not registered" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return None


def _check_train(train: Mapping, errors: list[str]) -> None:
    import torch

    from basicsr.models import lr_scheduler

    from .models import LOSS_KEYS, TRAIN_KEYS

    message = unknown_keys_message(train, TRAIN_KEYS, "train")
    if message:
        errors.append(message)
    for key in LOSS_KEYS:
        if isinstance(train.get(key), Mapping) and "type" in train[key]:
            loss = _registered(LOSS_REGISTRY, train[key]["type"], f"train.{key}", errors)
            if loss is not None:
                _check_typed(train[key], f"train.{key}", loss, errors)
    for key in ("optim_g", "optim_d", "optim_d3dfr"):
        if isinstance(train.get(key), Mapping):
            optimizer = getattr(torch.optim, str(train[key].get("type")), None)
            if optimizer is None:
                errors.append(f"train.{key}.type '{train[key].get('type')}' is not a torch.optim optimizer")
            else:
                _check_typed(train[key], f"train.{key}", optimizer, errors)
    scheduler = train.get("scheduler")
    if isinstance(scheduler, Mapping) and "type" in scheduler:    # (BasicSR pops the type when it builds it)
        name = {"MultiStepLR": "MultiStepRestartLR", "CosineAnnealingLR": "CosineAnnealingRestartLR"}.get(
            scheduler.get("type"), scheduler.get("type"))
        factory = getattr(lr_scheduler, str(name), None)
        if factory is None:
            errors.append(f"train.scheduler.type '{scheduler.get('type')}' is not a BasicSR scheduler "
                          "(MultiStepLR, CosineAnnealingRestartLR)")
        else:
            _check_typed(scheduler, "train.scheduler", factory, errors)


def _check_dataset(name: str, dataset: Mapping, is_train: bool, errors: list[str]) -> None:
    from .data import DATASET_KEYS, LOADER_KEYS

    where = f"datasets.{name}"
    kind = dataset.get("type")
    if kind == "SGPNFaceDataset":
        allowed = DATASET_KEYS | LOADER_KEYS
    elif kind == "PairedImageDataset":
        allowed = PAIRED_DATASET_KEYS | LOADER_KEYS
        if [dataset.get("mean"), dataset.get("std")] != [[0.5] * 3] * 2:
            errors.append(f"{where} (PairedImageDataset) needs 'mean: [0.5, 0.5, 0.5]' and 'std: [0.5, 0.5, 0.5]': "
                          "SGPN's networks take images in [-1, 1]")
    else:
        errors.append(f"{where}.type is {kind!r}: use SGPNFaceDataset, or PairedImageDataset for validation pairs")
        return
    message = unknown_keys_message(dataset, allowed, where)
    if message:
        errors.append(message)
    lq_only = kind == "SGPNFaceDataset" and not is_train and "dataroot_gt" not in dataset
    roots = ("dataroot_lq",) if lq_only else ("dataroot_gt",) + (("dataroot_lq",) if kind == "PairedImageDataset" else ())
    roots += tuple(k for k in ("dataroot_gt", "dataroot_lq") if k in dataset and k not in roots)
    lmdb = (dataset.get("io_backend") or {}).get("type") == "lmdb"
    for key in roots:
        if not dataset.get(key):
            errors.append(f"{where}.{key} is missing: the folder{' or LMDB' * lmdb} of the "
                          f"{'LQ' if key == 'dataroot_lq' else 'HQ'} face images")
        elif not os.path.exists(os.path.expanduser(str(dataset[key]))):
            errors.append(f"{where}.{key} {dataset[key]} does not exist (relative paths start from the folder "
                          f"`basicsr` runs in: {os.getcwd()})")


def check_options(opt: Mapping, is_train: bool | None = None) -> None:
    """Raise one :class:`OptionsError` listing every unknown/misspelled or missing key and every missing
    dataset folder of ``opt`` (a parsed options dict)."""
    is_train = bool(opt.get("is_train", True)) if is_train is None else is_train
    errors: list[str] = []
    message = unknown_keys_message(opt, TOP_KEYS | RUNTIME_KEYS, "the top level")
    if message:
        errors.append(message)
    for section, keys in (REQUIRED_TRAIN if is_train else REQUIRED_TEST).items():
        node = opt.get(section, {}) if section else opt
        missing = [k for k in keys if isinstance(node, Mapping) and k not in node]
        if missing:
            errors.append(f"missing option{'s' * (len(missing) > 1)} {', '.join(missing)} in "
                          f"{section or 'the top level'}")
    for section, allowed in (("path", PATH_KEYS | PATH_RUNTIME_KEYS), ("logger", LOGGER_KEYS), ("val", VAL_KEYS),
                             ("dist_params", DIST_KEYS)):
        if isinstance(opt.get(section), Mapping):
            message = unknown_keys_message(opt[section], allowed, section)
            if message:
                errors.append(message)
    wandb = (opt.get("logger") or {}).get("wandb")
    if isinstance(wandb, Mapping):
        message = unknown_keys_message(wandb, WANDB_KEYS, "logger.wandb")
        if message:
            errors.append(message)
    for key in ("network_g", "network_d", "network_d3dfr"):
        if isinstance(opt.get(key), Mapping):
            arch = _registered(ARCH_REGISTRY, opt[key].get("type"), key, errors)
            if arch is not None:
                _check_typed(opt[key], key, arch, errors, {"decoder_load_path"} if key == "network_g" else set())
    if isinstance(opt.get("shape_prior"), Mapping):
        from .models import SHAPE_PRIOR_KEYS

        message = unknown_keys_message(opt["shape_prior"], SHAPE_PRIOR_KEYS, "shape_prior")
        if message:
            errors.append(message)
    if is_train and isinstance(opt.get("train"), Mapping):
        _check_train(opt["train"], errors)
    for name, dataset in (opt.get("datasets") or {}).items():
        if isinstance(dataset, Mapping):
            _check_dataset(name, dataset, is_train and name.split("_")[0] == "train", errors)
    lq_only = [name for name, d in (opt.get("datasets") or {}).items()
               if isinstance(d, Mapping) and d.get("type") == "SGPNFaceDataset" and "dataroot_gt" not in d]
    for name, metric in ((opt.get("val") or {}).get("metrics") or {}).items():
        if lq_only and (metric or {}).get("type") not in ("calculate_niqe", "calculate_fid_ffhq"):
            errors.append(f"val.metrics.{name} needs ground truth, which the LQ-only set(s) {lq_only} do not have: "
                          "keep only calculate_niqe / calculate_fid_ffhq")
        kind = (metric or {}).get("type")
        if kind not in METRIC_KEYS:
            close = difflib.get_close_matches(str(kind), list(METRIC_KEYS), n=1)
            errors.append(f"val.metrics.{name}.type {kind!r} is not a metric here"
                          + (f" (did you mean '{close[0]}'?)" if close else f"; use one of {sorted(METRIC_KEYS)}"))
            continue
        message = unknown_keys_message(metric, METRIC_KEYS[kind] | {"type", "better"}, f"val.metrics.{name}")
        if message:
            errors.append(message)
    if errors:
        raise OptionsError("invalid options:\n  - " + "\n  - ".join(errors))


def check_options_file(path: str | os.PathLike, is_train: bool) -> None:
    """:func:`check_options` on a YAML options file, before BasicSR parses it."""
    with open(path) as fin:
        opt = yaml.safe_load(fin)
    if not isinstance(opt, Mapping):
        raise OptionsError(f"{path} is not an options file (a YAML mapping)")
    try:
        check_options(opt, is_train)
    except OptionsError as err:
        raise OptionsError(f"{path}: {err}") from None
