"""The compiled-package path (:mod:`sgpn_arch.pipeline.compilation`) on a small network: built once, loaded after,
following the module's current weights, eager when autograd is on or compiling fails."""

import logging
import os

import pytest
import torch
from torch import nn

from sgpn_arch.pipeline import compilation


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gain = nn.Parameter(torch.rand(1) + 0.5)
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x, y):   # gain * 2 depends on weights only: the compiler folds it
        return torch.relu(self.conv(x)) * (self.gain * 2) * self.scale + y.mean(1)[:, None, None, None]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGPN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compilation, "_USER_CACHE_DIR", None)
    return tmp_path


def _inputs(batch=1):
    return torch.rand(batch, 3, 16, 16), torch.rand(batch, 4)


def test_package_key_follows_shapes_and_code_not_values():
    net, (x, y) = _Net(), _inputs()
    key = compilation.package_key(net, (x, y))
    assert compilation.package_key(_Net(), (x + 1, y)) == key   # other weights, other values: same code
    assert compilation.package_key(net, _inputs(2)) != key
    wider = _Net()
    wider.conv = nn.Conv2d(3, 16, 3, padding=1)
    assert compilation.package_key(wider, (x, y)) != key


@pytest.mark.slow
def test_package_is_built_once_and_follows_the_weights(cache, monkeypatch):
    net = _Net().eval()
    runner = compilation.CompiledInference(net, ("cpu",))
    x, y = _inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(runner(x, y), net(x, y))   # a batch of 3 through the batch-1 package
    assert not runner.failed and [p.suffix for p in (cache / "compiled").iterdir()] == [".pt2"]

    monkeypatch.setattr(compilation, "build_package", lambda *a: pytest.fail("the package is on disk"))
    other = _Net().eval()
    loaded = compilation.CompiledInference(other, ("cpu",))   # another process, other weights: loads the package
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, y), other(x, y))
        other.load_state_dict(net.state_dict())   # changed in place: nothing the compiler folded goes stale
        torch.testing.assert_close(loaded(x, y), net(x, y))
        other.gain.mul_(3)
        torch.testing.assert_close(loaded(x, y), other(x, y))
        other.conv.weight = nn.Parameter(torch.zeros_like(other.conv.weight))   # replaced
        torch.testing.assert_close(loaded(x, y), other(x, y))
    assert not loaded.failed
    assert loaded(x, y).requires_grad   # autograd on (training): the eager module, not the package


def test_failed_compile_runs_eager_with_one_warning(cache, monkeypatch, caplog):
    seen_cache_dirs = []

    def no_compiler(*args, **kwargs):
        seen_cache_dirs.append(os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    monkeypatch.setattr(torch.export, "export", no_compiler)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    net = _Net().eval()
    runner = compilation.CompiledInference(net, ("cpu",))
    x, y = _inputs()
    with caplog.at_level(logging.WARNING, logger="sgpn_arch.pipeline.compilation"), torch.no_grad():
        torch.testing.assert_close(runner(x, y), net(x, y))
        torch.testing.assert_close(runner(x, y), net(x, y))
    assert [r.message.count("--no-compile") for r in caplog.records] == [1]   # warned once, not retried
    assert seen_cache_dirs == [str(cache / "inductor")] and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    assert not (cache / "compiled").exists() or not any((cache / "compiled").iterdir())   # nothing half-written
