"""Compiled inference of a network: an AOTInductor package built once per machine, eager if that fails.

``torch.export`` traces the network (inference path, no autograd) and AOTInductor compiles it into a
package of C++ kernels (``.pt2``) kept in :func:`package_dir`. The package holds no weights: it takes the
network's parameters and buffers as inputs on every call, so it costs no second copy of the weights, follows
any change to them, and one package serves every checkpoint of the same architecture. Its name is a hash of what its code depends on (torch version,
CPU instruction set, the network's classes and their source, parameter names and shapes, input shapes), so
a new torch, another machine or an edited network builds a new one.

On the 2-core CPU (``benchmarks/RESULTS.md``) building the package takes ~40 s, once; loading it takes
milliseconds and its first call is as fast as the next, where ``torch.compile`` re-traced the network in
every process (7–20 s even with its kernels cached). So "auto" compiles on CPU (``SGPN_COMPILE=0`` turns
that off, e.g. for a front end); on GPUs the compiled generator was slower at batch 1 (H200). Without a
working C++ compiler building fails: the network then runs eager, with one warning.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import platform
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

COMPILE_CHOICES = (False, True, "auto", "openvino")
AUTO_DEVICES = ("cpu",)
PACKAGE_FORMAT = 2   # bump when the way packages are built changes
# one memory pool per call for the intermediates instead of one allocation each: ~6 % faster on the 2-core CPU
# (fewer page faults), same outputs (benchmarks/RESULTS.md)
INDUCTOR_OPTIONS = {"memory_planning": True}

# read once: torch sets the variable to its own default (under /tmp) the first time it compiles anything
_USER_CACHE_DIR = os.environ.get("TORCHINDUCTOR_CACHE_DIR")


def cache_root() -> Path:
    """``SGPN_CACHE_DIR``, else ``~/.cache/sgpn``: where compiled packages and Inductor's caches are kept."""
    return Path(os.environ.get("SGPN_CACHE_DIR") or Path.home() / ".cache" / "sgpn").expanduser()


def package_dir() -> Path:
    """Folder of the compiled packages (``<cache>/compiled``)."""
    return cache_root() / "compiled"


def compile_cache_dir() -> Path:
    """Inductor's own caches while a package builds: ``TORCHINDUCTOR_CACHE_DIR`` if the user set it, else
    ``<cache>/inductor``."""
    return Path(_USER_CACHE_DIR or cache_root() / "inductor").expanduser()


@contextmanager
def _inductor_cache() -> Iterator[None]:
    """Point Inductor at :func:`compile_cache_dir` for the duration (a host process keeps its own setting)."""
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


def weights_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name: what a package takes as its first inputs, on every call."""
    return dict(module.named_parameters()) | dict(module.named_buffers())


def package_key(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> str:
    """Hash of everything a package's code depends on (not the weights' values: they are inputs of each call)."""
    sources = {}
    for cls in {type(m) for m in module.modules()}:
        try:
            digest = hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()
        except (OSError, TypeError):   # no source file (built in): the name and the shapes still count
            digest = ""
        sources[f"{cls.__module__}.{cls.__qualname__}"] = digest
    spec = dict(format=PACKAGE_FORMAT, torch=torch.__version__, machine=platform.machine(),
                cpu=torch.backends.cpu.get_cpu_capability(), sources=sources,
                constants=[(k, list(v.shape), str(v.dtype)) for k, v in weights_of(module).items()],
                inputs=[(list(x.shape), str(x.dtype), x.device.type) for x in inputs])
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


class _WeightsAsInputs(nn.Module):
    """``module`` as a function of its parameters and buffers followed by its inputs: exported this way, the
    compiler can neither bake the weights into the package nor fold them into constants of its own."""

    def __init__(self, module: nn.Module, names: list[str]):
        super().__init__()
        object.__setattr__(self, "inner", module)   # not a submodule: its weights are no constants of the export
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        weights = dict(zip(self.names, tensors))
        return torch.func.functional_call(self.inner, weights, tensors[len(self.names):])


def build_package(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export ``module`` (inference path) as a function of its weights and ``inputs``' shapes, and compile
    it into the package ``path`` (written under a temporary name, then renamed: never half a package)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".pt2", dir=path.parent)
    os.close(fd)
    weights = weights_of(module)
    try:
        with torch.no_grad(), _inductor_cache():
            program = torch.export.export(_WeightsAsInputs(module, list(weights)),
                                          (*weights.values(), *inputs), strict=False)
            torch._inductor.aoti_compile_and_package(program, package_path=tmp, inductor_configs=INDUCTOR_OPTIONS)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


class CompiledRunner:
    """Calls ``module`` through a compiled form on the devices in ``devices`` (None: all), eager elsewhere and
    whenever autograd is on (training); subclasses say how (:meth:`run`).

    Not an ``nn.Module``: holding one adds no state-dict keys. On CPU a batch runs one sample at a time (batching
    does not pay on CPU cores), so one compiled form serves every batch size. If building, loading or running it
    fails, it logs one warning and runs eager from then on.
    """

    failure_hint = "compile=False / --no-compile skips the attempt"   # how to avoid the attempt, in the warning

    def __init__(self, module: nn.Module, devices: tuple[str, ...] | None):
        self.module = module
        self.devices = devices
        self.failed = False
        self._lock = threading.Lock()

    def uses_compiled(self, device: torch.device) -> bool:
        """Whether a call on ``device`` goes through the compiled form."""
        return not self.failed and (self.devices is None or device.type in self.devices)

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        """One compiled call on a batch of one (CPU) or any batch (other devices)."""
        raise NotImplementedError

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.uses_compiled(inputs[0].device) and not torch.is_grad_enabled():
            try:
                if inputs[0].device.type == "cpu" and len(inputs[0]) > 1:
                    return torch.cat([self(*(x[i:i + 1] for x in inputs)) for i in range(len(inputs[0]))])
                return self.run(*inputs)
            except Exception as err:   # compiler missing or failing: eager still gives the same result
                logger.warning("compiling %s failed (%s: %s); running without compiling from now on (%s)",
                               type(self.module).__name__, type(err).__name__, err, self.failure_hint)
                self.failed = True
        return self.module(*inputs)


class CompiledInference(CompiledRunner):
    """The network through its AOTInductor package.

    The first call on a new input shape loads the package, building it first if this machine has none (~40 s on
    2 CPU cores, logged); a failure (no C++ compiler, an unsupported platform) means eager from then on.
    """

    def __init__(self, module: nn.Module, devices: tuple[str, ...] | None):
        super().__init__(module, devices)
        self._paths: dict[tuple, Path] = {}
        self._runners: dict[Path, Callable] = {}

    def package_path(self, *inputs: torch.Tensor) -> Path:
        """Where the package for inputs like these is (or will be) kept."""
        spec = tuple((tuple(x.shape), x.dtype, x.device.type) for x in inputs)
        if spec not in self._paths:   # hashing the sources takes milliseconds: once per input shape
            self._paths[spec] = package_dir() / f"{type(self.module).__name__}-{package_key(self.module, inputs)}.pt2"
        return self._paths[spec]

    def prepare(self, *inputs: torch.Tensor) -> Callable:
        """The compiled runner for inputs shaped like ``inputs`` (called with the weights, then the inputs):
        loaded, after building it if this machine has none."""
        path = self.package_path(*inputs)
        with self._lock:
            if path not in self._runners:
                if not path.is_file():
                    logger.info("compiling %s for this machine, once (about a minute on 2 CPU cores); later "
                                "runs load it from %s", type(self.module).__name__, path.parent)
                    start = time.perf_counter()
                    build_package(self.module, inputs, path)
                    logger.info("compiled in %.0f s", time.perf_counter() - start)
                self._runners[path] = torch._inductor.aoti_load_package(str(path))
        return self._runners[path]

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.prepare(*inputs)(*weights_of(self.module).values(), *inputs)


def compile_devices(compile: bool | str) -> tuple[str, ...] | None:
    """The device types on which ``compile`` runs the network compiled: ``()`` none, ``None`` all.

    ``"auto"`` → where it pays (CPU), unless the environment sets ``SGPN_COMPILE=0``; ``True`` → all;
    ``"openvino"`` → the CPU, through OpenVINO (:mod:`sgpn_arch.pipeline.openvino_inference`).
    """
    if compile not in COMPILE_CHOICES:
        raise ValueError(f"compile must be True, False, 'auto' or 'openvino', got {compile!r}")
    if compile == "auto":
        return () if os.environ.get("SGPN_COMPILE") == "0" else AUTO_DEVICES
    if compile == "openvino":
        return ("cpu",)
    return None if compile else ()


def compile_backend(compile: bool | str) -> str:
    """``"openvino"`` for ``compile="openvino"``, and for ``"auto"`` when the environment sets
    ``SGPN_COMPILE=openvino`` (every front end's default then uses it); else ``"inductor"``."""
    if compile == "openvino" or (compile == "auto" and os.environ.get("SGPN_COMPILE") == "openvino"):
        return "openvino"
    return "inductor"
