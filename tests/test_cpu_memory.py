"""``keep_freed_memory``: freed activations stay mapped, so the next forward takes no page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# one process per setting: the allocator change is process-wide and cannot be undone
FAULTS_PER_FORWARD = """
import resource, sys, torch
from sgpn_arch.pipeline.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.manual_seed(0)
x = torch.randn(1, 12, 1024, 1024)   # 48 MiB activations: above glibc's mmap threshold even at its 32 MiB maximum
conv = torch.nn.Conv2d(12, 12, 3, padding=1)
faults = []
with torch.inference_mode():
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = x
        for _ in range(4):
            y = torch.relu(conv(y)) + y
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults[2:])                                 # steady state, after the heap has grown
"""
PAGES_PER_ACTIVATION = 48 * 2 ** 20 // 4096


def _faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_FORWARD, mode], capture_output=True, text=True, check=True)
    return [int(n) for n in out.stdout.split()]


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_forwards_reuse_freed_memory_without_page_faults():
    # glibc maps every activation afresh and unmaps it on free: each forward faults them all in again
    assert min(_faults("default")) > 2 * PAGES_PER_ACTIVATION
    # kept in the heap: later forwards reuse the same pages
    assert max(_faults("keep")) < PAGES_PER_ACTIVATION // 4
