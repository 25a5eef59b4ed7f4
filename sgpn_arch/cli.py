"""The ``sgpn`` command: ``restore`` photos or folders, manage ``weights``, ``make-pairs`` and ``bench``, run a ``demo``."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger("sgpn")


def _inputs(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if path.is_file():
        return [path]
    raise SystemExit(f"sgpn: input {path} does not exist")


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", type=Path, required=True, help="image file or folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--upscale", type=int, default=2, help="output scale of whole photos (1-8, default 2)")
    parser.add_argument("--aligned", action="store_true", help="inputs are aligned face crops")
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument("--no-paste-back", action="store_true", help="save faces only, not the whole photo")
    parser.add_argument("--visibility", type=float, default=1.0, help="blend restored (1) and original (0) faces")
    parser.add_argument("--detector", default="retinaface_resnet50", choices=["retinaface_resnet50", "retinaface_mobile0.25"])
    parser.add_argument("--det-threshold", type=float, default=0.9)
    parser.add_argument("--min-face-size", type=int, default=0, help="ignore faces smaller than this (pixels)")
    parser.add_argument("--template", default="sgpn", choices=["sgpn", "ffhq"], help="alignment template of the weights")
    parser.add_argument("--parse", action="store_true", help="face-parsing paste-back mask (downloads ParseNet)")
    parser.add_argument("--generator", help="SGPN generator weights (default: zoo / SGPN_WEIGHTS_SGPN)")
    parser.add_argument("--d3dfr", help="D3DFR weights (default: zoo / SGPN_WEIGHTS_D3DFR)")
    parser.add_argument("--bfm", help="BFM folder (default: SGPN_BFM_DIR)")
    parser.add_argument("--detector-dir", help="folder holding the facexlib detector weights")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks (slow first face)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="generator precision (bfloat16: faster on GPUs and on CPUs with fast BF16, float16: GPU only)")
    parser.add_argument("--keep-memory", action="store_true",
                        help="on CPU, keep freed memory for the next face (25-45%% less time per face, higher peak memory)")
    parser.add_argument("--offline", action="store_true", help="never download weights")
    parser.add_argument("--ext", default="auto", help="output extension (auto: same as input, png for 16-bit/alpha)")


def build_restorer(args, model=None):
    import torch

    from .cpu_memory import keep_freed_memory
    from .restorer import FaceRestorer

    restorer = FaceRestorer(model, generator=args.generator, d3dfr=args.d3dfr, bfm_folder=args.bfm, device=args.device,
                            upscale=args.upscale, detector=args.detector, template=args.template,
                            use_parse=args.parse, det_threshold=args.det_threshold, min_face_size=args.min_face_size,
                            detector_rootpath=args.detector_dir, allow_download=not args.offline)
    if args.compile or args.dtype != "float32":
        restorer.model.accelerate(compile=args.compile, dtype=getattr(torch, args.dtype))
    if args.keep_memory and restorer.device.type == "cpu":
        keep_freed_memory()
    return restorer


def restore_files(restorer, files: list[Path], output: Path, args) -> list[tuple[Path, str]]:
    """Restore each file; returns the failures ``(path, reason)`` (a bad file never stops the batch)."""
    from tqdm import tqdm

    from .image_io import read_image, write_image

    failures = []
    for path in tqdm(files, desc="Restoring", unit="image"):
        try:
            image = read_image(path)
            result = restorer.restore(image, aligned=args.aligned, only_center_face=args.only_center_face,
                                      paste_back=not args.no_paste_back, visibility=args.visibility)
        except Exception as err:   # reported at the end; the batch goes on
            failures.append((path, f"{type(err).__name__}: {err}"))
            continue
        ext = args.ext if args.ext != "auto" else (".png" if image.dtype != np.uint8 or image.ndim == 3 and image.shape[2] == 4
                                                   else path.suffix.lower())
        ext = ext if ext.startswith(".") else "." + ext
        stem = path.stem
        for k, (crop, render, face) in enumerate(zip(result.cropped_faces, result.renders, result.restored_faces)):
            write_image(output / "cropped_faces" / f"{stem}_{k:02d}.png", crop)
            write_image(output / "renders" / f"{stem}_{k:02d}.png", render)
            write_image(output / "restored_faces" / f"{stem}_{k:02d}.png", face)
            write_image(output / "cmp" / f"{stem}_{k:02d}.png", np.hstack([crop, render, face]))
        if result.restored_image is not None:
            write_image(output / "restored_imgs" / f"{stem}{ext}", result.restored_image)
    return failures


def run_restore(args, model=None) -> int:
    from .restorer import FaceRestorer  # noqa: F401  (import errors surface before the loop)

    files = _inputs(args.input)
    restorer = build_restorer(args, model)
    failures = restore_files(restorer, files, args.output, args)
    done = len(files) - len(failures)
    print(f"restored {done} of {len(files)} image(s) into {args.output}")
    for path, reason in failures:
        print(f"FAILED {path}: {reason}", file=sys.stderr)
    return 1 if failures else 0


def run_weights(args) -> int:
    from . import metrics, peers  # noqa: F401  (their networks register in the zoo)
    from .weights import MODEL_ZOO, WeightsError, resolve_weights, sha256sum, weights_dir

    names = args.names or sorted(MODEL_ZOO)
    status = 0
    for name in names:
        if name not in MODEL_ZOO:
            print(f"unknown weights {name!r}; known: {', '.join(sorted(MODEL_ZOO))}", file=sys.stderr)
            return 2
        spec = MODEL_ZOO[name]
        if args.action == "list":
            local = weights_dir() / spec.filename
            print(f"{name:24s} {spec.filename:32s} {'present' if local.is_file() else 'missing':8s} {spec.description}")
            continue
        try:
            path = resolve_weights(name, allow_download=args.action == "download")
            digest = sha256sum(path)
            print(f"{name:24s} OK  {path}  sha256 {digest}" + ("" if spec.sha256 else " (no reference hash)"))
        except WeightsError as err:
            print(f"{name:24s} ERROR {err}", file=sys.stderr)
            status = 1
    return status


def run_demo(args) -> int:
    """Whole chain offline with random weights and a synthetic 3DMM on public-domain portraits."""
    from .bfm_synthetic import write_synthetic_bfm
    from .checkpoints import write_random_checkpoints

    cache = Path(tempfile.gettempdir()) / "sgpn_demo"
    weights = write_random_checkpoints(cache / "weights", preset="tiny")
    bfm = write_synthetic_bfm(cache / "bfm")
    inputs = args.input or _bundled_portraits(cache / "inputs")
    if not inputs:
        raise SystemExit("sgpn demo: no input given and no public-domain portrait found in matplotlib/scikit-image")
    print("demo: random weights and a synthetic 3D face model — the chain runs end to end, faces are NOT restored")
    ns = argparse.Namespace(input=inputs, output=args.output, upscale=2, aligned=False, only_center_face=False,
                            no_paste_back=False, visibility=1.0, detector=args.detector, det_threshold=0.9,
                            min_face_size=0, template="sgpn", parse=False, generator=str(weights["sgpn"]),
                            d3dfr=str(weights["d3dfr"]), bfm=str(bfm), detector_dir=args.detector_dir,
                            device=args.device, compile=False, dtype="float32", keep_memory=False, offline=False,
                            ext="auto")
    return run_restore(ns)


def run_make_pairs(args) -> int:
    from .bench import make_pairs

    hq, lq = make_pairs(args.hq, args.output, seed=args.seed, size=args.size, limit=args.limit)
    print(f"pairs written: GT {hq}, LQ {lq}")
    return 0


def run_bench(args) -> int:
    from .bench import MethodSources, run_bench as bench

    sources = MethodSources(weights={"sgpn": args.generator, "gfpgan": args.gfpgan, "gpen": args.gpen,
                                     "codeformer": args.codeformer},
                            d3dfr=args.d3dfr, bfm_folder=args.bfm, template=args.template,
                            allow_download=not args.offline)
    metric_weights = {"lpips": args.lpips_weights, "vgg16": args.vgg16_weights, "arcface": args.arcface_weights,
                      "fan": args.fan_weights, "fid": args.fid_weights, "fid_stats": args.fid_stats}
    from .restorer import pick_device

    rows = bench(args.lq, args.output, gt_dir=args.gt, methods=tuple(args.methods), metrics=tuple(args.metrics),
                 sources=sources, metric_weights=metric_weights, device=pick_device(args.device))
    print((args.output / "results.md").read_text())
    return 0 if all(row["status"] == "ok" for row in rows) else 1


def _bundled_portraits(folder: Path) -> Path | None:
    """Copy the public-domain portraits shipped in installed packages into ``folder`` (None: none found)."""
    import shutil

    from .examples import find_example_images

    found = find_example_images()
    if not found:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for path in found:
        shutil.copy(path, folder / path.name)
    return folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgpn", description="SGPN blind face restoration")
    sub = parser.add_subparsers(dest="command", required=True)
    add_restore_arguments(sub.add_parser("restore", help="restore photos or aligned face crops"))
    weights = sub.add_parser("weights", help="list, download or verify weights")
    weights.add_argument("action", choices=["list", "download", "verify"])
    weights.add_argument("names", nargs="*", help="weights to act on (default: all)")
    demo = sub.add_parser("demo", help="run the whole chain offline with random weights (installation check)")
    demo.add_argument("-o", "--output", type=Path, default=Path("demo_out"))
    demo.add_argument("-i", "--input", type=Path, help="images to use (default: public-domain portraits)")
    demo.add_argument("--detector", default="retinaface_mobile0.25", choices=["retinaface_resnet50", "retinaface_mobile0.25"])
    demo.add_argument("--detector-dir", help="folder holding the facexlib detector weights")
    demo.add_argument("--device", default="auto")
    pairs = sub.add_parser("make-pairs", help="build a CelebA-Test-like HQ/LQ set from HQ aligned faces")
    pairs.add_argument("--hq", type=Path, required=True, help="folder of HQ aligned faces")
    pairs.add_argument("-o", "--output", type=Path, required=True, help="writes OUTPUT/hq and OUTPUT/lq")
    pairs.add_argument("--seed", type=int, default=0)
    pairs.add_argument("--size", type=int, default=512)
    pairs.add_argument("--limit", type=int, help="use only the first N faces")
    bench = sub.add_parser("bench", help="score SGPN, GFPGAN, GPEN and CodeFormer on the same faces")
    bench.add_argument("--lq", type=Path, required=True, help="aligned LQ faces")
    bench.add_argument("--gt", type=Path, help="ground truth with the same file names (omit: NIQE/FID only)")
    bench.add_argument("-o", "--output", type=Path, required=True, help="restored faces and results.md/.csv")
    bench.add_argument("--methods", nargs="+", default=["sgpn", "gfpgan", "gpen", "codeformer"],
                       choices=["sgpn", "gfpgan", "gpen", "codeformer"])
    bench.add_argument("--metrics", nargs="+", default=["psnr", "ssim", "lpips", "deg", "lmd", "niqe", "fid"],
                       choices=["psnr", "ssim", "lpips", "deg", "lmd", "niqe", "fid"])
    bench.add_argument("--template", default="ffhq", choices=["sgpn", "ffhq"], help="alignment of the faces")
    for name in ("generator", "d3dfr", "gfpgan", "gpen", "codeformer"):
        bench.add_argument(f"--{name}", help=f"{name} weights (default: the weights zoo)")
    bench.add_argument("--bfm", help="BFM folder (default: SGPN_BFM_DIR)")
    for name in ("lpips", "vgg16", "arcface", "fan", "fid"):
        bench.add_argument(f"--{name}-weights", help=f"{name} metric network weights (default: the weights zoo)")
    bench.add_argument("--fid-stats", help="FFHQ Inception statistics (default: the weights zoo)")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--offline", action="store_true", help="never download weights")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "restore":
            return run_restore(args)
        if args.command == "weights":
            return run_weights(args)
        if args.command == "make-pairs":
            return run_make_pairs(args)
        if args.command == "bench":
            return run_bench(args)
        return run_demo(args)
    except (ValueError, FileNotFoundError, ImportError) as err:   # setup errors: one clear line
        print(f"sgpn: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
