"""Per-face inference speed of SGPN against GFPGAN v1.4, GPEN-512 and CodeFormer, on one machine.

All subjects run in one process, interleaved round by round, on the same random 512 input, with random
weights (speed does not depend on the values). Reported: median ms per call, ratio to GFPGAN v1.4's
generator measured in the same run, GFLOP/s achieved (FLOPs from ``torch.utils.flop_counter``) and
peak resident memory of a fresh process that builds the subject and runs it twice, and the first call
(warm-up, compilation included) separately. ``--keep-memory`` makes
the process keep freed memory (``sgpn_arch.pipeline.cpu_memory``, as ``sgpn restore --keep-memory``) for every subject.

    python benchmarks/bench_speed.py --rounds 7 --batch 1 4 --out benchmarks/RESULTS.md
    python benchmarks/bench_speed.py --device cuda --no-memory --subjects gfpgan gfpgan_fp16 sgpn_generator_fp16
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import basicsr_plugin.compat  # noqa: E402,F401  (gfpgan imports basicsr)
from benchmarks.scratch import scratch_dir  # noqa: E402
from sgpn_arch.pipeline.cpu_memory import keep_freed_memory  # noqa: E402

SIZE = 512
FULL_SIZE_BFM = {"grid": 214}   # 35.6k vertices / 70.4k triangles, like the real BFM09 front face


@functools.cache
def sgpn_assets() -> tuple[dict[str, Path], Path]:
    """Official-size random weights and a full-size synthetic BFM, written once per process."""
    from sgpn_arch.face3d.bfm_synthetic import write_synthetic_bfm
    from sgpn_arch.zoo.checkpoints import write_random_checkpoints

    folder = scratch_dir("sgpn_bench_")
    return (write_random_checkpoints(folder / "weights", preset="official"),
            write_synthetic_bfm(folder / "bfm", **FULL_SIZE_BFM))


def _sgpn_model(compile: bool | str, dtype: torch.dtype | None, device: str):
    from sgpn_arch.nets.model import build_sgpn

    weights, bfm = sgpn_assets()
    model = build_sgpn(weights["sgpn"], weights["d3dfr"], bfm, device=device, renderer_backend="torch")
    return model.requires_grad_(False).accelerate(compile=compile, dtype=dtype)


def _template_landmarks(batch: int) -> torch.Tensor:
    from sgpn_arch.pipeline.align import get_template

    return torch.as_tensor(get_template("sgpn", SIZE), dtype=torch.float32).expand(batch, 5, 2).clone()


DTYPES = {"_bf16": torch.bfloat16, "_fp16": torch.float16}


def _subject_dtype(name: str) -> torch.dtype | None:
    return next((dtype for suffix, dtype in DTYPES.items() if name.endswith(suffix)), None)


def build_subject(name: str, batch: int, device: str = "cpu") -> Callable[[], torch.Tensor]:
    """A zero-argument callable running one forward of ``name`` on a fixed random batch.

    Names: ``{gfpgan|gpen|codeformer}[_bf16|_fp16]`` and
    ``sgpn_{restore|generator}[_default|_compiled|_openvino][_bf16|_fp16]``
    (``_default``: the compile choice every front end gets, ``accelerate(compile="auto")``).
    """
    torch.manual_seed(0)
    lq = torch.rand(batch, 3, SIZE, SIZE, device=device) * 2 - 1
    dtype = _subject_dtype(name)
    if name.startswith("sgpn_"):
        compile = "auto" if "_default" in name else "openvino" if "_openvino" in name else "_compiled" in name
        model = _sgpn_model(compile=compile, dtype=dtype, device=device)
        landmarks = _template_landmarks(batch).to(device)
        if name.startswith("sgpn_restore"):
            return lambda: model.restore(lq, landmarks).restored
        with torch.no_grad():
            prior = model.shape_prior(lq, landmarks)
        dtype = model.generator_dtype
        render, coeffs, lq_g = prior.render.to(dtype), prior.coeffs.to(dtype), lq.to(dtype)
        generator = model.compiled_generator or model.generator
        return lambda: generator(lq_g, render, coeffs)
    from sgpn_arch.eval.peers import build_peer_network

    net = build_peer_network(name.removesuffix("_bf16").removesuffix("_fp16")).eval().requires_grad_(False)
    net = net.to(device, dtype or torch.float32)
    lq = lq.to(dtype or torch.float32)
    return lambda: net(lq)


def _eager_twin(name: str) -> str:
    return name.replace("_compiled", "").replace("_default", "").replace("_openvino", "")


def count_flops(fn: Callable[[], torch.Tensor]) -> float:
    """FLOPs of one call (subjects hold no gradients: the counter's module hooks expect none or real ones)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peak_rss_mib(name: str, batch: int, keep_memory: bool) -> float:
    """VmHWM of a fresh process that builds ``name`` and runs it twice."""
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(REPO)!r});"
            f"import torch; torch.set_num_threads({torch.get_num_threads()});"
            f"from sgpn_arch.pipeline.cpu_memory import keep_freed_memory; {keep_memory} and keep_freed_memory();"
            f"from benchmarks.bench_speed import build_subject;"
            f"fn = build_subject({name!r}, {batch});"
            "ctx = torch.inference_mode(); ctx.__enter__(); fn(); fn();"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def run(subjects: list[str], batches: list[int], rounds: int, memory: bool, keep_memory: bool,
        device: str = "cpu") -> list[dict]:
    """Time every subject, round by round; wall time, and on CPU also the process's CPU time.

    CPU time (all threads) is what a face costs the machine: on a CPU shared with other work it moves
    much less than wall time, so its ratio to GFPGAN is the steadier one under load.
    """
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for batch in batches:
        fns = {name: build_subject(name, batch, device) for name in subjects}
        # compiled subjects do the eager twin's FLOPs (counting would compile them under the counter)
        flops = {name: count_flops(fn) for name, fn in fns.items() if name == _eager_twin(name)}
        warmup: dict[str, float] = {}
        with torch.inference_mode():
            for name, fn in fns.items():   # warm-up (and compilation)
                start = time.perf_counter()
                fn()
                sync()
                warmup[name] = time.perf_counter() - start
            times: dict[str, list[float]] = {name: [] for name in fns}
            cpu_times: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    start, cpu_start = time.perf_counter(), time.process_time()
                    fn()
                    sync()
                    times[name].append(time.perf_counter() - start)
                    cpu_times[name].append(time.process_time() - cpu_start)
        base = statistics.median(times["gfpgan"]) if "gfpgan" in times else None
        cpu_base = statistics.median(cpu_times["gfpgan"]) if "gfpgan" in times else None
        for name in fns:
            med, cpu_med = statistics.median(times[name]), statistics.median(cpu_times[name])
            gflops = flops[_eager_twin(name)] / 1e9 if _eager_twin(name) in flops else None
            rows.append(dict(subject=name, batch=batch, median_ms=med * 1000, per_face_ms=med * 1000 / batch,
                             min_ms=min(times[name]) * 1000, max_ms=max(times[name]) * 1000,
                             ratio_to_gfpgan=med / base if base else None,
                             cpu_ms=cpu_med * 1000, cpu_ratio_to_gfpgan=cpu_med / cpu_base if cpu_base else None,
                             warmup_ms=warmup[name] * 1000,
                             gflops=gflops, gflop_per_s=gflops / med if gflops else None,
                             peak_rss_mib=peak_rss_mib(name, batch, keep_memory) if memory else None))
    return rows


def machine_line(device: str, allocator: str) -> str:
    """Where a table was measured, with the load averages (other work on a shared CPU inflates wall times)."""
    if device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name(device)}, host {os.cpu_count()} cores"
    else:
        where = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"Machine: {where}, torch {torch.__version__}, {torch.get_num_threads()} threads; allocator: {allocator}; "
            f"load average (1/5/15 min) at the end: {load}")


def to_markdown(rows: list[dict], command: str, machine: str) -> str:
    lines = [f"Command: `{command}`", "", machine, "",
             "| subject | batch | median ms | per face ms | min–max ms | ratio to GFPGAN | CPU-time ratio | warm-up s "
             "| GFLOPs | GFLOP/s | peak RSS MiB |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    fmt = lambda value, spec: "–" if value is None else format(value, spec)  # noqa: E731
    for r in rows:
        lines.append(f"| {r['subject']} | {r['batch']} | {r['median_ms']:.0f} | {r['per_face_ms']:.0f} | "
                     f"{r['min_ms']:.0f}–{r['max_ms']:.0f} | {fmt(r['ratio_to_gfpgan'], '.2f')} | "
                     f"{fmt(r['cpu_ratio_to_gfpgan'], '.2f')} | {r['warmup_ms'] / 1000:.1f} | {fmt(r['gflops'], '.1f')} | "
                     f"{fmt(r['gflop_per_s'], '.0f')} | {fmt(r['peak_rss_mib'], '.0f')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", nargs="+",
                        default=["gfpgan", "sgpn_generator", "sgpn_generator_compiled", "sgpn_restore",
                                 "sgpn_restore_default", "gpen", "codeformer"],
                        help="{gfpgan|gpen|codeformer}[_bf16|_fp16], sgpn_{restore|generator}[_default|_compiled|_openvino][_bf16|_fp16]")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (GPU: add --no-memory)")
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
    rows = run(args.subjects, args.batch, args.rounds, memory=not args.no_memory, keep_memory=keep_memory,
               device=args.device)
    allocator = "freed memory kept (--keep-memory)" if keep_memory else "glibc default"
    table = to_markdown(rows, "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
                        machine_line(args.device, allocator))
    sys.stdout.write(table)
    if args.out:
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
