"""The ``sgpn`` command: ``restore`` photos or folders, manage ``weights``, ``make-pairs`` and ``bench``, run a ``demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .zoo.weights_cli import add_weights_parser, run_weights

logger = logging.getLogger("sgpn")


class UsageError(ValueError):
    """A command-line option or path that cannot work: reported in one line, exit code 2, before models load."""


def _inputs(path: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Images to restore under ``path`` and the other files of the folder with what they are (skipped)."""
    from .pipeline.image_io import describe_file, looks_like_image

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if looks_like_image(p)]
        skipped = [(p, describe_file(p)) for p in files if p not in images]
        if not images:
            raise UsageError(f"no images in {path}" + (f" ({len(skipped)} other file(s))" if skipped else ""))
        return images, skipped
    if path.is_file():
        if not looks_like_image(path):
            raise UsageError(f"{path} is {describe_file(path)}; sgpn restore takes images or folders of images")
        return [path], []
    raise UsageError(f"input {path} does not exist")


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} is a file; give a folder (it is created if missing)")
    parent = output
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot create output folder {output}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write into {parent}: permission denied; choose another output folder")


def check_restore_args(args) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Validate every option and path before any model loads; returns the inputs and the skipped files."""
    from .pipeline.bg_upsampler import check_bg_upsampler
    from .pipeline.image_io import OUTPUT_FORMATS
    from .pipeline.restorer import pick_device

    ranges = [("--upscale", args.upscale, 1, 8), ("--visibility", args.visibility, 0, 1),
              ("--det-threshold", args.det_threshold, 0, 1), ("--min-face-size", args.min_face_size, 0, None),
              ("--min-eye-distance", args.min_eye_distance, 0, None)]
    for option, value, low, high in ranges:
        if value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise UsageError(f"{option} must be {allowed}, got {value}")
    if args.det_threshold in (0, 1):
        raise UsageError(f"--det-threshold must be strictly between 0 and 1, got {args.det_threshold}")
    if args.detection_size != 0 and args.detection_size < 64:
        raise UsageError(f"--detection-size must be 0 (full resolution) or at least 64 pixels, "
                         f"got {args.detection_size}")
    if args.ext != "auto" and "." + args.ext.lower().lstrip(".") not in OUTPUT_FORMATS:
        raise UsageError(f"--ext {args.ext}: choose auto or one of {', '.join(e[1:] for e in OUTPUT_FORMATS)}")
    if args.suffix is not None and (not args.suffix or any(c in args.suffix for c in "/\\:") or args.suffix[0] == "."):
        raise UsageError(f"--suffix {args.suffix!r} must be a plain word (no path separators or leading dot)")
    try:
        pick_device(args.device)
        check_bg_upsampler(args.bg_upsampler)
    except ValueError as err:
        raise UsageError(str(err)) from None
    _check_output(args.output)
    return _inputs(args.input)


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    from .pipeline.image_io import OUTPUT_FORMATS

    parser.add_argument("-i", "--input", type=Path, required=True, help="image file or folder")
    parser.add_argument("-o", "--output", type=Path, default=Path("results"), help="output folder (default: results)")
    parser.add_argument("--upscale", type=int, default=2, help="output scale of whole photos (1-8, default 2)")
    parser.add_argument("--aligned", action="store_true", help="inputs are aligned face crops")
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument("--no-paste-back", action="store_true", help="save faces only, not the whole photo")
    parser.add_argument("--visibility", type=float, default=1.0, help="blend restored (1) and original (0) faces")
    parser.add_argument("--detector", default="retinaface_resnet50", choices=["retinaface_resnet50", "retinaface_mobile0.25"])
    parser.add_argument("--det-threshold", type=float, default=0.9)
    parser.add_argument("--min-face-size", type=int, default=0, help="ignore faces smaller than this (pixels)")
    parser.add_argument("--min-eye-distance", type=float, default=5.0,
                        help="ignore faces whose eyes are closer than this (pixels, default 5 as GFPGAN/CodeFormer)")
    parser.add_argument("--detection-size", type=int, default=800,
                        help="detect faces on a copy of large photos reduced to this shorter side (default 800; "
                             "0: full resolution, which splits faces over ~512 px into partial faces)")
    parser.add_argument("--template", default="sgpn", choices=["sgpn", "ffhq"], help="alignment template of the weights")
    parser.add_argument("--parse", action="store_true", help="face-parsing paste-back mask (downloads ParseNet)")
    parser.add_argument("--match-official", action="store_true",
                        help="the official SGPN demo's crop, rounding and paste-back, pixel for pixel (use --upscale 1)")
    parser.add_argument("--bg-upsampler", default="none", choices=["none", "realesrgan"],
                        help="upsample the background of whole photos with Real-ESRGAN x2plus "
                             "(pip install \"sgpn-restore[realesrgan]\"; slow on CPU)")
    parser.add_argument("--generator", help="SGPN generator weights (default: zoo / SGPN_WEIGHTS_SGPN)")
    parser.add_argument("--d3dfr", help="D3DFR weights (default: zoo / SGPN_WEIGHTS_D3DFR)")
    parser.add_argument("--bfm", help="BFM folder (default: SGPN_BFM_DIR)")
    parser.add_argument("--detector-dir", help="folder holding the facexlib detector weights")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="run the generator compiled (default: on CPU, where it pays; the first run on a machine "
                             "compiles it once, about a minute on 2 cores, into ~/.cache/sgpn/compiled)")
    parser.add_argument("--openvino", action="store_true",
                        help="on CPU, run the generator through OpenVINO (pip install \"sgpn-restore[openvino]\"): "
                             "~20%% less time per face than the default, ~0.9 GiB more memory; built once per "
                             "checkpoint into ~/.cache/sgpn/compiled")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="generator precision (bfloat16: faster on GPUs and on CPUs with fast BF16, float16: GPU only)")
    parser.add_argument("--keep-memory", action="store_true",
                        help="on CPU, keep freed memory for the next face (25-45%% less time per face, higher peak memory)")
    parser.add_argument("--offline", action="store_true", help="never download weights")
    parser.add_argument("--ext", default="auto",
                        help=f"whole-image format: auto (the input's, PNG where it cannot hold the result) or one of "
                             f"{', '.join(e[1:] for e in OUTPUT_FORMATS)}")
    parser.add_argument("--suffix", help="appended to restored faces and images: NAME_00_SUFFIX.png (as GFPGAN)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip inputs whose outputs a previous run wrote completely (to resume an interrupted run)")


def compile_choice(args) -> bool | str:
    """``FaceRestorer``'s ``compile`` from ``--compile/--no-compile`` and ``--openvino``."""
    if args.openvino:
        if args.compile is False:
            raise SystemExit("sgpn restore: --openvino and --no-compile contradict each other; give one of them")
        return "openvino"
    return "auto" if args.compile is None else args.compile


def build_restorer(args, model=None):
    import torch

    from .pipeline.bg_upsampler import build_bg_upsampler
    from .pipeline.cpu_memory import keep_freed_memory
    from .pipeline.restorer import FaceRestorer

    bg_upsampler = None
    if args.bg_upsampler != "none" and not (args.aligned or args.no_paste_back):
        bg_upsampler = build_bg_upsampler(args.bg_upsampler, args.device, outscale=args.upscale,
                                          allow_download=not args.offline)
    restorer = FaceRestorer(model, generator=args.generator, d3dfr=args.d3dfr, bfm_folder=args.bfm, device=args.device,
                            upscale=args.upscale, detector=args.detector, template=args.template,
                            use_parse=args.parse, det_threshold=args.det_threshold, min_face_size=args.min_face_size,
                            min_eye_distance=args.min_eye_distance, detection_size=args.detection_size or None,
                            bg_upsampler=bg_upsampler, detector_rootpath=args.detector_dir,
                            allow_download=not args.offline,
                            fidelity="official" if args.match_official else "default",
                            compile=compile_choice(args))
    if args.dtype != "float32":
        restorer.model.accelerate(dtype=getattr(torch, args.dtype))
    if args.keep_memory and restorer.device.type == "cpu":
        keep_freed_memory()
    return restorer


@dataclass
class BatchReport:
    """What :func:`restore_files` did: images restored, skipped (complete already), failed, and interruption."""

    total: int
    restored: int = 0
    skipped: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def finished(self) -> int:
        return self.restored + self.skipped + len(self.failures)


def restore_files(restorer, files: list[Path], output: Path, args) -> BatchReport:
    """Restore each file into ``output``; a bad file or a failed write never stops the batch, and every
    input's files are written all or none (also on Ctrl-C, which ends the batch: ``report.interrupted``)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .pipeline.image_io import check_format, read_image
    from .pipeline.output_folder import OutputFolder, output_names, write_all_or_none

    folder = OutputFolder(output, suffix=args.suffix or "", ext=args.ext)
    names = output_names(files)
    whole_image = args.aligned or not args.no_paste_back
    report = BatchReport(total=len(files))
    try:
        with logging_redirect_tqdm():
            for path in tqdm(files, desc="Restoring", unit="image"):
                name = names[path]
                if args.skip_existing and folder.is_complete(name, whole_image):
                    report.skipped += 1
                    continue
                try:
                    image = read_image(path)
                    if whole_image:
                        check_format(image, folder.image_ext(image, path))
                    result = restorer.restore(image, aligned=args.aligned, only_center_face=args.only_center_face,
                                              paste_back=not args.no_paste_back, visibility=args.visibility)
                    logger.info("%s: %d face(s)", path.name, len(result.restored_faces))
                    write_all_or_none(folder.files_of(name, result, image, path))
                except Exception as err:   # reported at the end; the batch goes on
                    report.failures.append((path, f"{type(err).__name__}: {err}"))
                    continue
                report.restored += 1
    except KeyboardInterrupt:
        report.interrupted = True
    return report


def run_restore(args, model=None) -> int:
    """``sgpn restore``: 0 all restored, 1 some inputs failed, 2 set-up error, 130 interrupted."""
    files, skipped = check_restore_args(args)
    for path, what in skipped:
        print(f"skipped {path.name}: {what}", file=sys.stderr)
    restorer = build_restorer(args, model)
    report = restore_files(restorer, files, args.output, args)
    already = f" ({report.skipped} already complete, skipped)" if report.skipped else ""
    if report.interrupted:
        print(f"interrupted after {report.finished} of {report.total} image(s){already}; every image written is "
              f"complete: rerun with --skip-existing to continue", file=sys.stderr)
    else:
        print(f"restored {report.restored} of {report.total} image(s) into {args.output}{already}")
    for path, reason in report.failures:
        print(f"FAILED {path}: {reason}", file=sys.stderr)
    return 130 if report.interrupted else 1 if report.failures else 0


def run_demo(args) -> int:
    """Whole chain offline with random weights and a synthetic 3DMM on public-domain portraits."""
    from .face3d.bfm_synthetic import write_synthetic_bfm
    from .zoo.checkpoints import write_random_checkpoints

    cache = Path(tempfile.gettempdir()) / "sgpn_demo"
    weights = write_random_checkpoints(cache / "weights", preset="tiny")
    bfm = write_synthetic_bfm(cache / "bfm")
    inputs = args.input or _bundled_portraits(cache / "inputs")
    if not inputs:
        raise SystemExit("sgpn demo: no input given and no public-domain portrait found in matplotlib/scikit-image")
    print("demo: random weights and a synthetic 3D face model — the chain runs end to end, faces are NOT restored")
    restore = argparse.ArgumentParser(prog="sgpn demo")
    add_restore_arguments(restore)   # every other option at its default
    ns = restore.parse_args(["-i", str(inputs), "-o", str(args.output), "--detector", args.detector,
                             "--generator", str(weights["sgpn"]), "--d3dfr", str(weights["d3dfr"]), "--bfm", str(bfm),
                             "--device", args.device, "--no-compile"]   # an installation check: no compile wait
                            + (["--detector-dir", str(args.detector_dir)] if args.detector_dir else []))
    return run_restore(ns)


def run_make_pairs(args) -> int:
    from .eval.bench import make_pairs

    hq, lq = make_pairs(args.hq, args.output, seed=args.seed, size=args.size, limit=args.limit)
    print(f"pairs written: GT {hq}, LQ {lq}")
    return 0


def run_bench(args) -> int:
    from .eval.bench import MethodSources, run_bench as bench

    sources = MethodSources(weights={"sgpn": args.generator, "gfpgan": args.gfpgan, "gpen": args.gpen,
                                     "codeformer": args.codeformer},
                            d3dfr=args.d3dfr, bfm_folder=args.bfm, template=args.template,
                            allow_download=not args.offline)
    metric_weights = {"lpips": args.lpips_weights, "vgg16": args.vgg16_weights, "arcface": args.arcface_weights,
                      "fan": args.fan_weights, "fid": args.fid_weights, "fid_stats": args.fid_stats}
    from .pipeline.restorer import pick_device

    rows = bench(args.lq, args.output, gt_dir=args.gt, methods=tuple(args.methods), metrics=tuple(args.metrics),
                 sources=sources, metric_weights=metric_weights, device=pick_device(args.device))
    print((args.output / "results.md").read_text())
    return 0 if all(row["status"] == "ok" for row in rows) else 1


def _bundled_portraits(folder: Path) -> Path | None:
    """Copy the public-domain portraits shipped in installed packages into ``folder`` (None: none found)."""
    import shutil

    from .pipeline.examples import find_example_images

    found = find_example_images()
    if not found:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for path in found:
        shutil.copy(path, folder / path.name)
    return folder


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``sgpn restore: error: ...``, exit code 2); the usage stays in ``--help``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sgpn", description="SGPN blind face restoration")
    sub = parser.add_subparsers(dest="command", required=True)
    add_restore_arguments(sub.add_parser("restore", help="restore photos or aligned face crops"))
    add_weights_parser(sub)
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
    except (ValueError, OSError, ImportError) as err:   # setup errors: one clear line
        print(f"sgpn: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # before the batch started (loading models): nothing was written
        print("sgpn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
