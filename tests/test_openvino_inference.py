"""The optional OpenVINO backend (:mod:`sgpn_arch.pipeline.openvino_inference`): equal to eager, built once per
weights and imported after, rebuilt when the weights change, eager under autograd, a clear error without OpenVINO.

OpenVINO's worker threads do not survive a fork: a process that has run it and then forks (the DataLoader workers of
the training tests) can crash. So the checks that run OpenVINO do it in a fresh, spawned process, and this module
never imports it into the test process.
"""

import builtins
import importlib.util
import multiprocessing
import os
import sys

import pytest
import torch
from torch import nn

from sgpn_arch.pipeline import compilation
from sgpn_arch.pipeline.openvino_inference import OpenVINOInference

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="the [openvino] extra (part of [test]) is not installed")


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gain = nn.Parameter(torch.rand(1) + 0.5)

    def forward(self, x, y):
        return torch.cat([torch.relu(self.conv(x)) * self.gain, x], 1) + y.mean(1)[:, None, None, None]


def _in_fresh_process(check, *args):
    """Run ``check(*args)`` in a spawned process (assertion errors come back raised here)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(check, args)


def _built_once_per_weights(cache_root):
    from sgpn_arch.pipeline import openvino_inference

    os.environ["SGPN_CACHE_DIR"] = str(cache_root)

    def blobs():
        return sorted((cache_root / "compiled").glob("_Net-openvino-*.blob"))

    net, x, y = _Net().eval(), torch.rand(3, 3, 16, 16), torch.rand(3, 4)
    runner = OpenVINOInference(net)
    with torch.inference_mode():
        torch.testing.assert_close(runner(x, y), net(x, y), rtol=0, atol=1e-5)   # a batch through the batch-1 blob
    assert not runner.failed and len(blobs()) == 1

    built, real_build = [], openvino_inference.build_blob

    def counted_build(*args):
        built.append(args)
        real_build(*args)

    openvino_inference.build_blob = counted_build
    again = OpenVINOInference(net)   # another process, same weights: imports the blob
    with torch.inference_mode():
        torch.testing.assert_close(again(x[:1], y[:1]), net(x[:1], y[:1]), rtol=0, atol=1e-5)
    assert built == []
    with torch.no_grad():
        net.gain.mul_(3)   # changed in place: the baked weights are stale, a new blob is built
    with torch.inference_mode():
        torch.testing.assert_close(again(x[:1], y[:1]), net(x[:1], y[:1]), rtol=0, atol=1e-5)
    assert len(built) == 1 and len(blobs()) == 2
    assert again(x, y).requires_grad   # autograd on (training): the eager module


@needs_openvino
def test_equal_to_eager_built_once_per_weights_and_rebuilt_when_they_change(tmp_path):
    _in_fresh_process(_built_once_per_weights, tmp_path)


def _sgpn_equals_eager(cache_root, generator, d3dfr, bfm):
    from sgpn_arch.nets.model import build_sgpn
    from sgpn_arch.pipeline.align import get_template

    os.environ["SGPN_CACHE_DIR"] = str(cache_root)
    torch.set_num_threads(2)
    model = build_sgpn(generator, d3dfr, bfm, renderer_backend="torch").eval()
    lq = torch.rand(2, 3, model.size, model.size) * 2 - 1
    landmarks = torch.as_tensor(get_template("sgpn", model.size), dtype=torch.float32).expand(2, 5, 2)
    with torch.inference_mode():
        eager = model.restore(lq, landmarks).restored
        model.accelerate(compile="openvino")
        assert isinstance(model.compiled_generator, OpenVINOInference)
        torch.testing.assert_close(model.restore(lq, landmarks).restored, eager, rtol=0, atol=1e-4)
    assert not model.compiled_generator.failed


@needs_openvino
def test_sgpn_generator_through_openvino_equals_eager(tiny_weights, bfm_dir, tmp_path):
    _in_fresh_process(_sgpn_equals_eager, tmp_path, tiny_weights["sgpn"], tiny_weights["d3dfr"], bfm_dir)


def test_auto_takes_openvino_from_the_environment(monkeypatch):
    monkeypatch.setenv("SGPN_COMPILE", "openvino")
    assert compilation.compile_backend("auto") == "openvino" and compilation.compile_devices("auto") == ("cpu",)
    assert compilation.compile_backend(True) == "inductor"
    monkeypatch.setenv("SGPN_COMPILE", "0")
    assert compilation.compile_backend("auto") == "inductor" and compilation.compile_devices("auto") == ()
    with pytest.raises(ValueError, match="'openvino'"):
        compilation.compile_devices("onnx")


def test_without_openvino_the_error_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(ImportError, match=r'pip install "openvino>=2026.4"'):
        OpenVINOInference(_Net())


def test_cli_openvino_and_no_compile_contradict():
    from sgpn_arch.cli import build_parser, compile_choice

    parse = build_parser().parse_args
    assert compile_choice(parse(["restore", "-i", "x", "--openvino"])) == "openvino"
    assert compile_choice(parse(["restore", "-i", "x"])) == "auto"
    with pytest.raises(SystemExit, match="contradict"):
        compile_choice(parse(["restore", "-i", "x", "--openvino", "--no-compile"]))
