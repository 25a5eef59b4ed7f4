"""torch.distributed under BasicSR's ``--launcher pytorch`` (torchrun) and ``--launcher slurm``.

BasicSR 1.4.2's ``init_dist`` always calls ``torch.cuda.set_device(rank % device_count)`` (a
``ZeroDivisionError`` without CUDA) and hard-codes NCCL for torchrun. Here the process group uses NCCL
when CUDA is available and gloo otherwise; ``SGPN_DIST_BACKEND=gloo|nccl|mpi`` overrides the choice for
both launchers (the YAML's ``dist_params.backend``, which BasicSR passes only to slurm, is not read).
Each process drives the GPU ``LOCAL_RANK`` (torchrun) or ``SLURM_LOCALID`` (slurm), modulo the GPU count.
"""

from __future__ import annotations

import inspect
import logging
import os
import subprocess

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger("basicsr")

BACKEND_ENV = "SGPN_DIST_BACKEND"
BACKENDS = ("nccl", "gloo", "mpi")
DEFAULT_PORT = 29500   # torch.distributed's own default
# torch ≥ 2.14 deprecates broadcast_buffers in favour of forward_sync_buffers (same meaning for forwards)
_DDP_PARAMETERS = inspect.signature(DistributedDataParallel).parameters
_FORWARD_BUFFER_SYNC = "forward_sync_buffers" if "forward_sync_buffers" in _DDP_PARAMETERS else "broadcast_buffers"


def choose_backend() -> str:
    """``SGPN_DIST_BACKEND`` when set, else ``nccl`` with CUDA and ``gloo`` without."""
    requested = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not requested:
        return "nccl" if torch.cuda.is_available() else "gloo"
    if requested not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={requested!r} is not a torch.distributed backend; use one of {BACKENDS}")
    if requested == "nccl" and not torch.cuda.is_available():
        raise RuntimeError(f"{BACKEND_ENV}=nccl needs CUDA GPUs and none is available; use {BACKEND_ENV}=gloo")
    return requested


def slurm_environment(port: int | None = None) -> dict[str, str]:
    """torchrun's variables (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) from slurm's.

    The master is the first host of ``SLURM_NODELIST`` (``scontrol show hostnames``); the port is
    ``port`` (the YAML's ``dist_params.port``), else ``MASTER_PORT``, else 29500.
    """
    hosts = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_NODELIST"]], check=True,
                           capture_output=True, text=True).stdout.split()
    return {"MASTER_ADDR": hosts[0],
            "MASTER_PORT": str(port if port is not None else os.environ.get("MASTER_PORT", DEFAULT_PORT)),
            "WORLD_SIZE": os.environ["SLURM_NTASKS"], "RANK": os.environ["SLURM_PROCID"],
            "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0")}


def init_dist(launcher: str, backend: str | None = None, port: int | None = None, **_ignored) -> None:
    """Drop-in for ``basicsr.utils.dist_util.init_dist``: one process group, NCCL on GPUs, gloo on CPUs.

    ``backend`` (BasicSR passes the YAML's ``dist_params.backend`` for slurm) is ignored in favour of
    ``choose_backend()``, so that one options file runs on GPU and CPU machines.
    """
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method("spawn")          # as BasicSR: data-loader workers must not fork a CUDA context
    if launcher == "slurm":
        os.environ.update(slurm_environment(port))
    elif launcher != "pytorch":
        raise ValueError(f"unknown launcher {launcher!r}; use pytorch (torchrun) or slurm")
    chosen = choose_backend()
    if torch.cuda.is_available():           # one GPU per process (shared round-robin when there are fewer)
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=chosen)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def broadcast_state(module: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (ranks draw different random initialisations)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor, src=0)


def wrap_ddp(net: torch.nn.Module, find_unused_parameters: bool = False) -> DistributedDataParallel:
    """``DistributedDataParallel`` that syncs gradients only: buffers are not re-broadcast at every forward.

    Every buffer of the networks trained here is a constant (blur kernels; D3DFR's BatchNorm statistics
    are frozen) and ``broadcast_state`` made them equal at start, so a per-forward broadcast would only
    cost time (and, with the BFM outside every wrapper, nothing large is ever synchronised).
    """
    device = next(net.parameters()).device
    if device.type == "cpu" and dist.get_backend() == "nccl":
        raise RuntimeError("the model is on the CPU (num_gpu: 0) but the process group uses NCCL, which needs "
                           f"GPUs: set num_gpu to the GPUs per process, or {BACKEND_ENV}=gloo for CPU training")
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters, **{_FORWARD_BUFFER_SYNC: False})
