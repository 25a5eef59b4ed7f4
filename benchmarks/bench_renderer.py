"""Time of the 224×224 shape-prior render against the rest of a per-face restore, in one process.

Mesh: the synthetic BFM at full resolution (``grid=214``: about 35.6k vertices / 70.4k triangles, the size
of BFM09's front face). Reported: median ms of the renderer alone (colour + grey attributes, coverage
mask), of the 3DMM layer, and of the whole SGPN restore with the official generator widths (random
weights), and the renderer's share of that restore.

    python benchmarks/bench_renderer.py --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scratch import scratch_dir  # noqa: E402


def median_ms(fn, rounds: int) -> float:
    fn()   # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--grid", type=int, default=214, help="synthetic BFM resolution (214: real BFM09 size)")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sgpn_arch.face3d.bfm_synthetic import write_synthetic_bfm
    from sgpn_arch.nets.model import build_sgpn
    from sgpn_arch.pipeline.align import get_template
    from sgpn_arch.zoo.checkpoints import write_random_checkpoints

    folder = scratch_dir("sgpn_bench_renderer_")
    weights = write_random_checkpoints(folder / "weights", preset="official")
    model = build_sgpn(weights["sgpn"], weights["d3dfr"], write_synthetic_bfm(folder / "bfm", grid=args.grid),
                       renderer_backend="torch")
    prior = model.shape_prior
    torch.manual_seed(0)
    lq = torch.rand(args.batch, 3, 512, 512) * 2 - 1
    landmarks = torch.as_tensor(get_template("sgpn", 512), dtype=torch.float32).expand(args.batch, 5, 2).clone()
    with torch.inference_mode():
        coeffs = torch.zeros(args.batch, 257)
        mesh = prior.face_model.compute(coeffs)
        attributes = torch.cat([mesh.colors, mesh.gray_colors], -1)
        render_ms = median_ms(lambda: prior.renderer(mesh.vertices, mesh.triangles, attributes), args.rounds)
        mesh_ms = median_ms(lambda: prior.face_model.compute(coeffs), args.rounds)
        restore_ms = median_ms(lambda: model.restore(lq, landmarks), args.rounds)
    print(f"mesh: {mesh.vertices.shape[1]} vertices, {mesh.triangles.shape[0]} triangles; batch {args.batch}; "
          f"{torch.get_num_threads()} threads")
    print("| step | median ms | share of the restore |")
    print("| --- | ---: | ---: |")
    for name, ms in (("renderer (224², colour + grey + mask)", render_ms), ("3DMM layer", mesh_ms),
                     ("whole restore (D3DFR + 3DMM + render + generator)", restore_ms)):
        print(f"| {name} | {ms:.1f} | {ms / restore_ms:.1%} |")


if __name__ == "__main__":
    main()
