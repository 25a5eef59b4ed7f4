"""Per-face inference speed of SGPN against GFPGAN v1.4, GPEN-512 and CodeFormer, on one machine.

All subjects run in one process, interleaved round by round, on the same random 512 input, with random
weights (speed does not depend on the values). Reported: median ms per call, ratio to GFPGAN v1.4's
generator measured in the same run, GFLOP/s achieved (FLOPs from ``torch.utils.flop_counter``) and
peak resident memory of a fresh process that builds the subject and runs it twice. ``--keep-memory`` makes
the process keep freed memory (``sgpn_arch.cpu_memory``, as ``sgpn restore --keep-memory``) for every subject.

    python benchmarks/bench_speed.py --rounds 7 --batch 1 4 --out benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import basicsr_plugin.compat  # noqa: E402,F401  (gfpgan imports basicsr)
from sgpn_arch.cpu_memory import keep_freed_memory  # noqa: E402

SIZE = 512
FULL_SIZE_BFM = {"grid": 214}   # 35.6k vertices / 70.4k triangles, like the real BFM09 front face


def _sgpn_model(compile: bool, dtype: torch.dtype | None):
    from sgpn_arch.bfm_synthetic import write_synthetic_bfm
    from sgpn_arch.checkpoints import write_random_checkpoints
    from sgpn_arch.model import build_sgpn

    folder = Path(tempfile.mkdtemp(prefix="sgpn_bench_"))
    weights = write_random_checkpoints(folder / "weights", preset="official")
    bfm = write_synthetic_bfm(folder / "bfm", **FULL_SIZE_BFM)
    model = build_sgpn(weights["sgpn"], weights["d3dfr"], bfm, renderer_backend="torch")
    return model.requires_grad_(False).accelerate(compile=compile, dtype=dtype)


def _template_landmarks(batch: int) -> torch.Tensor:
    from sgpn_arch.align import get_template

    return torch.as_tensor(get_template("sgpn", SIZE), dtype=torch.float32).expand(batch, 5, 2).clone()


def build_subject(name: str, batch: int) -> Callable[[], torch.Tensor]:
    """A zero-argument callable running one forward of ``name`` on a fixed random batch."""
    torch.manual_seed(0)
    lq = torch.rand(batch, 3, SIZE, SIZE) * 2 - 1
    if name.startswith("sgpn_"):
        # sgpn_{restore|generator}[_compiled][_bf16]
        model = _sgpn_model(compile="_compiled" in name, dtype=torch.bfloat16 if name.endswith("_bf16") else None)
        landmarks = _template_landmarks(batch)
        if name.startswith("sgpn_restore"):
            return lambda: model.restore(lq, landmarks).restored
        prior = model.shape_prior(lq, landmarks)
        dtype = model.generator_dtype
        render, coeffs, lq_g = prior.render.detach().to(dtype), prior.coeffs.detach().to(dtype), lq.to(dtype)
        return lambda: model.generator(lq_g, render, coeffs)
    from sgpn_arch.peers import build_peer_network

    net = build_peer_network(name).eval().requires_grad_(False)
    return lambda: net(lq)


def count_flops(fn: Callable[[], torch.Tensor]) -> float:
    """FLOPs of one call (subjects hold no gradients: the counter's module hooks expect none or real ones)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peak_rss_mib(name: str, batch: int, keep_memory: bool) -> float:
    """VmHWM of a fresh process that builds ``name`` and runs it twice."""
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(REPO)!r});"
            f"import torch; torch.set_num_threads({torch.get_num_threads()});"
            f"from sgpn_arch.cpu_memory import keep_freed_memory; {keep_memory} and keep_freed_memory();"
            f"from benchmarks.bench_speed import build_subject;"
            f"fn = build_subject({name!r}, {batch});"
            "ctx = torch.inference_mode(); ctx.__enter__(); fn(); fn();"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def run(subjects: list[str], batches: list[int], rounds: int, memory: bool, keep_memory: bool) -> list[dict]:
    rows = []
    for batch in batches:
        fns = {name: build_subject(name, batch) for name in subjects}
        flops = {name: count_flops(fn) for name, fn in fns.items()}
        with torch.inference_mode():
            for fn in fns.values():   # warm-up (and compilation)
                fn()
            times: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
        base = statistics.median(times["gfpgan"]) if "gfpgan" in times else None
        for name in fns:
            med = statistics.median(times[name])
            rows.append(dict(subject=name, batch=batch, median_ms=med * 1000, per_face_ms=med * 1000 / batch,
                             min_ms=min(times[name]) * 1000, max_ms=max(times[name]) * 1000,
                             ratio_to_gfpgan=med / base if base else None,
                             gflops=flops[name] / 1e9, gflop_per_s=flops[name] / 1e9 / med,
                             peak_rss_mib=peak_rss_mib(name, batch, keep_memory) if memory else None))
    return rows


def to_markdown(rows: list[dict], command: str, allocator: str) -> str:
    lines = [f"Command: `{command}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; allocator: {allocator}", "",
             "| subject | batch | median ms | per face ms | min–max ms | ratio to GFPGAN | GFLOPs | GFLOP/s | peak RSS MiB |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = f"{r['ratio_to_gfpgan']:.2f}" if r["ratio_to_gfpgan"] is not None else "–"
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] is not None else "–"
        lines.append(f"| {r['subject']} | {r['batch']} | {r['median_ms']:.0f} | {r['per_face_ms']:.0f} | "
                     f"{r['min_ms']:.0f}–{r['max_ms']:.0f} | {ratio} | {r['gflops']:.1f} | {r['gflop_per_s']:.0f} | {rss} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", nargs="+",
                        default=["gfpgan", "sgpn_generator", "sgpn_generator_compiled", "sgpn_generator_compiled_bf16",
                                 "sgpn_restore", "sgpn_restore_compiled", "sgpn_restore_compiled_bf16", "gpen", "codeformer"],
                        help="gfpgan, gpen, codeformer, sgpn_{restore|generator}[_compiled][_bf16]")
    parser.add_argument("--batch", nargs="+", type=int, default=[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-memory", action="store_true", help="skip the per-subject peak-memory processes")
    parser.add_argument("--keep-memory", action="store_true",
                        help="keep freed memory in the process, as `sgpn restore --keep-memory` (applies to every subject)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument("--json", type=Path, help="write raw rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_memory = args.keep_memory and keep_freed_memory()
    rows = run(args.subjects, args.batch, args.rounds, memory=not args.no_memory, keep_memory=keep_memory)
    allocator = "freed memory kept (--keep-memory)" if keep_memory else "glibc default"
    table = to_markdown(rows, "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]), allocator)
    sys.stdout.write(table)
    if args.out:
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
