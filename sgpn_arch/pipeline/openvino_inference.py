"""CPU inference of a network through OpenVINO: the optional backend (``pip install "sgpn-restore[openvino]"``).

``compile="openvino"`` (``sgpn restore --openvino``, ``SGPN_COMPILE=openvino`` for "auto" in every front end) runs
the generator through OpenVINO's CPU plugin in float32. On the 2-core CPU (``benchmarks/RESULTS.md``) SGPN's
generator takes 0.70–0.83× GFPGAN's time where the AOTInductor package takes 0.92–0.93×, equal to eager within
1e-5; whole photos 0.78–0.82× instead of ~1.0×. It is not the default because OpenVINO keeps its own copy of the
weights and its activation memory (a 512 crop restore peaks at 2.82 GiB instead of 2.25 GiB, ``sgpn restore`` on a
folder at 3.31 GiB instead of 2.43 GiB) and cannot take the weights as call inputs: the compiled model is kept on
disk per checkpoint (``<cache>/compiled/<network>-openvino-<hash>.blob``, ~320 MB for SGPN, keyed by the weights'
values too), built once in ~15 s and imported in under a second by later processes. Changing the weights in place
rebuilds it. OpenVINO's worker threads do not survive a fork: a process that has run it must not fork afterwards
(training's DataLoader workers crashed the test process that way), so it is meant for restoring processes only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

import torch
from torch import nn

from .compilation import CompiledRunner, package_dir, package_key, weights_of
from .image_io import write_bytes_atomic

logger = logging.getLogger(__name__)

CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}   # f32: bf16 on CPUs that have it
INSTALL = ('the OpenVINO backend needs the openvino package: pip install "openvino>=2026.4" '
           '(or the extra "sgpn-restore[openvino]")')


def _openvino():
    try:
        import openvino
    except ImportError as err:
        raise ImportError(INSTALL) from err
    return openvino


def _config() -> dict:
    return CPU_CONFIG | {"INFERENCE_NUM_THREADS": torch.get_num_threads()}


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of the module's parameter and buffer values (OpenVINO bakes them into its compiled model)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(weights_of(module).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def build_blob(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export ``module`` for ``inputs``' shapes, compile it with OpenVINO and write the compiled model to ``path``
    (under a temporary name, then renamed: never half a file)."""
    ov = _openvino()
    # the autograd path: the inference path's writes into preallocated buffers (slice_scatter) have no CPU kernel
    with torch.enable_grad():
        program = torch.export.export(module, tuple(x.detach() for x in inputs), strict=False)
    compiled = ov.Core().compile_model(ov.convert_model(program), "CPU", _config())
    write_bytes_atomic(path, compiled.export_model().getbuffer())


class OpenVINOInference(CompiledRunner):
    """The network through OpenVINO on the CPU, in float32 (other dtypes run eager).

    The first call for an input shape imports the compiled model from the cache, building it first if there is none
    for these weights. A missing ``openvino`` package is an error at construction (it was asked for by name);
    ``devices`` is there for :class:`~sgpn_arch.pipeline.compilation.CompiledRunner`'s interface: OpenVINO runs on
    the CPU only.
    """

    failure_hint = "leave out --openvino / compile='openvino' to skip the attempt"

    def __init__(self, module: nn.Module, devices: tuple[str, ...] | None = ("cpu",)):
        self.ov = _openvino()
        super().__init__(module, ("cpu",))
        self._requests: dict[tuple, tuple[tuple, object]] = {}   # input spec -> (weights state, infer request)
        self._infer_lock = threading.Lock()   # an infer request serves one call at a time (Gradio runs threads)

    def _weights_state(self) -> tuple:
        """Cheap fingerprint of the weights' storage and in-place edits: a change means the blob is stale."""
        return tuple((t.data_ptr(), t._version) for t in weights_of(self.module).values())

    def blob_path(self, *inputs: torch.Tensor) -> Path:
        """Where the compiled model for these weights and inputs like these is (or will be) kept."""
        key = hashlib.sha256(f"{package_key(self.module, inputs)}-{weights_digest(self.module)}-"
                             f"{self.ov.__version__}".encode()).hexdigest()[:20]
        return package_dir() / f"{type(self.module).__name__}-openvino-{key}.blob"

    def prepare(self, *inputs: torch.Tensor):
        """The OpenVINO infer request for inputs shaped like ``inputs``: imported, after building if needed."""
        spec = tuple((tuple(x.shape), x.dtype) for x in inputs)
        state = self._weights_state()
        with self._lock:
            if spec not in self._requests or self._requests[spec][0] != state:
                path = self.blob_path(*inputs)
                if not path.is_file():
                    logger.info("compiling %s with OpenVINO for these weights, once (~15 s on 2 CPU cores) into %s",
                                type(self.module).__name__, path.parent)
                    start = time.perf_counter()
                    build_blob(self.module, inputs, path)
                    logger.info("compiled in %.0f s", time.perf_counter() - start)
                compiled = self.ov.Core().import_model(path.read_bytes(), "CPU", _config())
                self._requests[spec] = (state, compiled.create_infer_request())
        return self._requests[spec][1]

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        if inputs[0].dtype != torch.float32:
            return self.module(*inputs)
        request = self.prepare(*inputs)
        with self._infer_lock:
            out = request.infer([x.contiguous().numpy() for x in inputs])[0]
            return torch.from_numpy(out.copy())   # the request reuses its output buffer on the next call
