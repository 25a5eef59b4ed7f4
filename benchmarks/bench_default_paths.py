"""Time per face of what each front end runs with no speed option, against GFPGAN v1.4's generator.

One process per front end, on a folder of photos (detection, alignment, SGPN, paste-back: the whole
``FaceRestorer.restore``), with generated official-size weights and a full-size synthetic BFM. The first
photo's restore (the warm-up: the first call, which builds the compiled generator if this machine has none
— ``--fresh-cache`` measures that first-ever build) is reported on its own; after it, each
photo's restore is timed next to one GFPGAN generator forward (interleaved), and the ratio is restore time
per face over GFPGAN's median, in wall time and in the process's CPU time (steadier on a shared CPU).
GFPGAN runs twice per photo: in this process (it shares the front end's allocator settings) and in a process
of its own at its defaults (as ``inference_gfpgan.py`` runs it) — the ``own process`` ratio; the three calls
take turns, so both baselines see the same machine. The peak resident memory of this process (the front end
with one GFPGAN model loaded) is reported too.

    python benchmarks/bench_default_paths.py --front-end cli --faces ../shared/data/faces/real_lq_cropped \\
        --detector-dir ../shared/weights/retinaface

Front ends (each builds its restorer through its own code, at its defaults):
  cli     ``sgpn restore -i FOLDER -o OUT`` (``build_restorer`` of the parsed command line)
  comfyui what the SGPN Restore Faces node builds (``FaceRestorer(network, device="cpu", upscale=1, ...)``)
  gradio  the app's ``sgpn_loader`` (it warms up while loading, so "build" holds the compilation; it also
          keeps freed memory, process-wide: GFPGAN too)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import basicsr_plugin.compat  # noqa: E402,F401  (gfpgan imports basicsr)
from benchmarks.bench_speed import machine_line, sgpn_assets  # noqa: E402
from benchmarks.scratch import scratch_dir  # noqa: E402

DETECTOR = "retinaface_mobile0.25"   # the detector whose weights the tests have offline


def build_front_end(name: str, faces: Path, detector_dir: Path):
    """The :class:`FaceRestorer` the front end ``name`` builds with its default options."""
    weights, bfm = sgpn_assets()
    if name == "cli":
        from sgpn_arch.cli import build_parser, build_restorer

        args = build_parser().parse_args(
            ["restore", "-i", str(faces), "-o", str(scratch_dir("sgpn_restore_out_")),
             "--generator", str(weights["sgpn"]), "--d3dfr", str(weights["d3dfr"]), "--bfm", str(bfm),
             "--detector", DETECTOR, "--detector-dir", str(detector_dir), "--offline"])
        return build_restorer(args)
    if name == "comfyui":
        from sgpn_arch.nets.model import build_sgpn
        from sgpn_arch.pipeline.restorer import FaceRestorer

        network = build_sgpn(weights["sgpn"], weights["d3dfr"], bfm, device="cpu")   # SGPN_ModelLoader.load
        return FaceRestorer(network, device="cpu", upscale=1, det_threshold=0.9, detector=DETECTOR,
                            template="sgpn", detector_rootpath=str(detector_dir), allow_download=False)
    if name == "gradio":
        from gradio_app.config import DemoConfig
        from gradio_app.models import RestoreSettings, sgpn_loader

        os.environ["SGPN_WEIGHTS_RETINAFACE_MOBILE025"] = str(next(detector_dir.glob("*mobilenet0.25*")))
        config = DemoConfig(generator=str(weights["sgpn"]), d3dfr=str(weights["d3dfr"]), bfm_dir=str(bfm),
                            detector=DETECTOR, allow_download=False)
        factory = sgpn_loader(config)(lambda step: None)   # the app's loading, its warm-up forward included
        return factory(RestoreSettings(config.default_upscale))
    raise ValueError(f"unknown front end {name!r}")


class GFPGANProcess:
    """GFPGAN v1.4's generator in a process of its own, at its defaults: one timed forward per :meth:`time`."""

    CODE = ("import sys, time, torch; torch.set_num_threads({threads}); sys.path.insert(0, {repo!r});"
            "from benchmarks.bench_speed import build_subject; forward = build_subject('gfpgan', 1)\n"
            "for line in sys.stdin:\n"
            "    with torch.inference_mode():\n"
            "        w, c = time.perf_counter(), time.process_time(); forward()\n"
            "        print(time.perf_counter() - w, time.process_time() - c, flush=True)\n")

    def __init__(self):
        code = self.CODE.format(threads=torch.get_num_threads(), repo=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.time()   # loads the model, first call

    def time(self) -> tuple[float, float]:
        """Wall and CPU seconds of one forward."""
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        wall, cpu = self.proc.stdout.readline().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def run(front_end: str, faces: Path, detector_dir: Path, limit: int) -> dict:
    from sgpn_arch.eval.peers import build_peer_network
    from sgpn_arch.pipeline.image_io import list_images, read_image

    own_process = GFPGANProcess()
    torch.manual_seed(0)
    gfpgan = build_peer_network("gfpgan").eval().requires_grad_(False)
    lq = torch.rand(1, 3, 512, 512) * 2 - 1
    start = time.perf_counter()
    restorer = build_front_end(front_end, faces, detector_dir)
    build_s = time.perf_counter() - start
    images = [read_image(p) for p in list_images(faces)[: limit + 1]]
    start, cpu_start = time.perf_counter(), time.process_time()
    first_faces = len(restorer.restore(images[0]).restored_faces)
    warmup = dict(wall_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu_start, faces=first_faces)
    with torch.inference_mode():
        gfpgan(lq)
    restore, restore_cpu, reference, reference_cpu, n_faces = [], [], [], [], 0
    own, own_cpu = [], []
    for image in images[1:]:
        wall, cpu = own_process.time()
        own.append(wall)
        own_cpu.append(cpu)
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            gfpgan(lq)
        reference.append(time.perf_counter() - start)
        reference_cpu.append(time.process_time() - cpu_start)
        start, cpu_start = time.perf_counter(), time.process_time()
        n_faces += len(restorer.restore(image).restored_faces)
        restore.append(time.perf_counter() - start)
        restore_cpu.append(time.process_time() - cpu_start)
    own_process.close()
    per_face, per_face_cpu = sum(restore) / n_faces, sum(restore_cpu) / n_faces
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    compiled = restorer.model.compiled_generator
    return dict(front_end=front_end, compiled=bool(compiled and compiled.uses_compiled(restorer.device)),
                build_s=build_s, warmup=warmup, photos=len(restore), faces=n_faces,
                per_face_ms=per_face * 1000, gfpgan_ms=statistics.median(reference) * 1000,
                ratio=per_face / statistics.median(reference),
                per_face_cpu_ms=per_face_cpu * 1000, gfpgan_cpu_ms=statistics.median(reference_cpu) * 1000,
                own_gfpgan_ms=statistics.median(own) * 1000, own_ratio=per_face / statistics.median(own),
                own_cpu_ratio=per_face_cpu / statistics.median(own_cpu), peak_mib=peak_mib,
                cpu_ratio=per_face_cpu / statistics.median(reference_cpu))


def to_markdown(row: dict, command: str, allocator: str) -> str:
    w = row["warmup"]
    return "\n".join([
        f"Command: `{command}`", "", machine_line("cpu", allocator), "",
        "| front end | generator | photos / faces | per face ms | GFPGAN ms, this process | ratio | CPU-time ratio | "
        "GFPGAN ms, own process | ratio | CPU-time ratio | warm-up (first photo) s | build s | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {row['front_end']} | {'compiled' if row['compiled'] else 'eager'} | {row['photos']} / {row['faces']} | "
        f"{row['per_face_ms']:.0f} | {row['gfpgan_ms']:.0f} | {row['ratio']:.2f} | {row['cpu_ratio']:.2f} | "
        f"{row['own_gfpgan_ms']:.0f} | {row['own_ratio']:.2f} | {row['own_cpu_ratio']:.2f} | "
        f"{w['wall_s']:.1f} ({w['faces']} face{'s' if w['faces'] != 1 else ''}) | {row['build_s']:.1f} | "
        f"{row['peak_mib']:.0f} |", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--front-end", required=True, choices=["cli", "comfyui", "gradio"])
    parser.add_argument("--faces", type=Path, required=True, help="folder of photos with faces")
    parser.add_argument("--detector-dir", type=Path, required=True, help="folder holding the RetinaFace mobile0.25 weights")
    parser.add_argument("--limit", type=int, default=6, help="photos timed after the warm-up photo")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, help="append the raw row (JSON line) here")
    parser.add_argument("--fresh-cache", action="store_true",
                        help="an empty SGPN_CACHE_DIR: the warm-up includes building the compiled generator")
    args = parser.parse_args()
    if args.fresh_cache:
        os.environ["SGPN_CACHE_DIR"] = str(scratch_dir("sgpn_cache_"))
    torch.set_num_threads(args.threads)
    row = run(args.front_end, args.faces, args.detector_dir, args.limit)
    from sgpn_arch.pipeline.cpu_memory import freed_memory_kept

    allocator = "freed memory kept (GFPGAN in this process too)" if freed_memory_kept() else "glibc default"
    sys.stdout.write(to_markdown(row, "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
                                 allocator))
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
