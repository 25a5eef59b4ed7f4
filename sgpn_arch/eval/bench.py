"""Quality benchmark: SGPN, GFPGAN, GPEN and CodeFormer on the same aligned faces, scored with the same metrics.

``make_pairs`` builds a CelebA-Test-like set (HQ faces + their blind degradation, fixed seed);
``run_bench`` restores every LQ face with every method, saves the results, scores them and writes one
table (``results.md`` + ``results.csv``) with the metrics, the time per face and the peak memory.
A method or metric whose weights are missing is reported in the table; the run goes on.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from ..pipeline.align import get_template
from ..pipeline.image_io import list_images, read_image, to_bgr_uint8, write_image
from ..zoo.checkpoints import CheckpointError
from ..zoo.weights import WeightsError
from .degradation import BlindDegradation

logger = logging.getLogger(__name__)

SIZE = 512
METHODS = ("sgpn", "gfpgan", "gpen", "codeformer")
METRICS = ("psnr", "ssim", "lpips", "deg", "lmd", "niqe", "fid")
FULL_REFERENCE = {"psnr", "ssim", "lpips", "deg", "lmd"}
LOWER_IS_BETTER = {"lpips", "deg", "lmd", "niqe", "fid"}

Restore = Callable[[torch.Tensor], torch.Tensor]
"""Aligned faces ``[B,3,512,512]`` RGB in [-1, 1] → restored faces, same layout."""


def read_face(path: Path, size: int = SIZE) -> np.ndarray:
    """An aligned face as ``size``² BGR uint8 (area-downscaled or bilinear-upscaled)."""
    face = to_bgr_uint8(read_image(path))
    if face.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if face.shape[0] > size else cv2.INTER_LINEAR
        face = cv2.resize(face, (size, size), interpolation=interp)
    return face


def make_pairs(hq_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0, size: int = SIZE,
               degradation: BlindDegradation | None = None, limit: int | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/hq`` (HQ faces at ``size``) and ``out_dir/lq`` (degraded, same names) and return both.

    The degradation (default: GFPGAN's CelebA-Test recipe, SPEC §6) of face ``i`` uses the seed
    ``(seed, i)``, so the set is reproducible and independent of the order it is built in.
    """
    degradation = degradation or BlindDegradation()
    out_dir = Path(out_dir)
    files = list_images(hq_dir)[:limit]
    if not files:
        raise FileNotFoundError(f"no images in {hq_dir}")
    for index, path in enumerate(files):
        hq = read_face(path, size)
        lq = degradation(hq.astype(np.float32) / 255.0, np.random.default_rng([seed, index]))
        name = path.stem + ".png"
        write_image(out_dir / "hq" / name, hq)
        write_image(out_dir / "lq" / name, np.clip(lq * 255.0 + 0.5, 0, 255).astype(np.uint8))
    logger.info("wrote %d HQ/LQ pairs to %s", len(files), out_dir)
    return out_dir / "hq", out_dir / "lq"


@dataclass
class MethodSources:
    """Where each method's weights come from (``None``: the weights zoo) and how SGPN sees its crops."""

    weights: dict[str, str | None] = field(default_factory=dict)   # method → checkpoint path
    d3dfr: str | None = None
    bfm_folder: str | None = None
    template: str = "ffhq"                                          # alignment of the benchmark crops
    allow_download: bool = True


def build_method(name: str, sources: MethodSources, device: torch.device) -> Restore:
    """The restore function of method ``name`` with its real (or given) weights.

    Raises :class:`WeightsError` / :class:`CheckpointError` / the BFM error when something is missing.
    """
    if name == "sgpn":
        from ..nets.model import build_sgpn
        from ..zoo.weights import resolve_bfm_folder, resolve_weights

        model = build_sgpn(resolve_weights("sgpn", sources.weights.get("sgpn"), sources.allow_download),
                           resolve_weights("d3dfr", sources.d3dfr, sources.allow_download),
                           resolve_bfm_folder(sources.bfm_folder), device=device)
        landmarks = torch.as_tensor(get_template(sources.template, SIZE), dtype=torch.float32, device=device)
        return lambda lq: model.restore(lq, landmarks.expand(lq.shape[0], 5, 2)).restored
    if name in METHODS:
        from .peers import load_peer

        net = load_peer(name, sources.weights.get(name), sources.allow_download).to(device)
        return lambda lq: net(lq)
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on GPU, else the process's peak RSS (Linux ``VmHWM``, reset first)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mib: float | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        try:
            status = Path("/proc/self/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.mib = int(line.split()[1]) / 1024


def _to_tensor(face: np.ndarray, device: torch.device) -> torch.Tensor:
    rgb = np.ascontiguousarray(face[..., ::-1], dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)


def _to_face(tensor: torch.Tensor) -> np.ndarray:
    rgb = ((tensor[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(rgb[..., ::-1])


@torch.inference_mode()
def restore_folder(restore: Restore, files: list[Path], out_dir: Path, device: torch.device) -> tuple[list[Path], float, float | None]:
    """Restore each face into ``out_dir``; returns (outputs, median seconds per face, peak MiB).

    The first face also serves as warm-up; it is timed like the others.
    """
    from tqdm import tqdm

    outputs, seconds = [], []
    with PeakMemory(device) as peak:
        for path in tqdm(files, desc=f"restoring → {out_dir.name}", unit="face", leave=False):
            lq = _to_tensor(read_face(path), device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            restored = restore(lq)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
            outputs.append(write_image(out_dir / (path.stem + ".png"), _to_face(restored)))
    return outputs, statistics.median(seconds), peak.mib


def face_metric(metric: str, restored: np.ndarray, gt: np.ndarray | None, metric_weights: dict,
                device: torch.device) -> float:
    """One face's value of a per-face metric (``gt`` may be ``None`` for NIQE)."""
    from . import metrics

    if metric == "niqe":
        return metrics.calculate_niqe(restored)
    if metric == "psnr":
        return metrics.calculate_psnr(restored, gt)
    if metric == "ssim":
        return metrics.calculate_ssim(restored, gt)
    if metric == "lpips":
        return metrics.calculate_lpips(restored, gt, weights=metric_weights.get("lpips"),
                                       backbone_weights=metric_weights.get("vgg16"), device=device)
    if metric == "deg":
        return metrics.calculate_identity_deg(restored, gt, weights=metric_weights.get("arcface"), device=device)
    if metric == "lmd":
        return metrics.calculate_lmd(restored, gt, weights=metric_weights.get("fan"), device=device)
    raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


def score(outputs: list[Path], gt_dir: Path | None, metrics: tuple[str, ...], metric_weights: dict,
          device: torch.device, unavailable: dict[str, str]) -> dict[str, float]:
    """Every metric of the restored faces (means; FID: the set against the FFHQ statistics).

    Each face and its ground truth are read once for all per-face metrics. A metric that cannot be
    computed (missing weights, too few faces) is left out and recorded in ``unavailable`` with the reason.
    """
    from .metrics import calculate_fid_ffhq

    def give_up(metric: str, error: Exception) -> None:
        unavailable[metric] = str(error)
        logger.warning("metric %s not computed: %s", metric, error)

    values: dict[str, list[float]] = {m: [] for m in metrics if m != "fid" and m not in unavailable}
    for path in outputs:
        restored, gt = read_face(path), None
        if FULL_REFERENCE & values.keys():
            if not (gt_dir / path.name).is_file():
                raise FileNotFoundError(f"no ground truth {gt_dir / path.name} for {path.name}")
            gt = read_face(gt_dir / path.name)
        for metric in list(values):
            try:
                values[metric].append(face_metric(metric, restored, gt, metric_weights, device))
            except (WeightsError, CheckpointError, ValueError) as error:
                give_up(metric, error)
                del values[metric]
    scores = {metric: float(np.mean(faces)) for metric, faces in values.items()}
    if "fid" in metrics and "fid" not in unavailable:
        try:
            if len(outputs) < 2:
                raise ValueError("FID needs at least 2 faces")
            scores["fid"] = calculate_fid_ffhq([read_face(p) for p in outputs], stats=metric_weights.get("fid_stats"),
                                               weights=metric_weights.get("fid"), device=device)
        except (WeightsError, CheckpointError, ValueError) as error:
            give_up("fid", error)
    return scores


def run_bench(lq_dir: str | os.PathLike, out_dir: str | os.PathLike, gt_dir: str | os.PathLike | None = None,
              methods: tuple[str, ...] = METHODS, metrics: tuple[str, ...] = METRICS,
              sources: MethodSources | None = None, metric_weights: dict | None = None,
              device: str | torch.device = "cpu") -> list[dict]:
    """Restore ``lq_dir`` with every method, score it and write ``results.md`` / ``results.csv`` in ``out_dir``.

    Without ``gt_dir`` only the no-reference metrics (NIQE, FID) are computed. Returns the table rows.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    sources, metric_weights, device = sources or MethodSources(), metric_weights or {}, torch.device(device)
    out_dir, gt_dir = Path(out_dir), Path(gt_dir) if gt_dir else None
    metrics = tuple(m for m in metrics if gt_dir is not None or m not in FULL_REFERENCE)
    files = list_images(lq_dir)
    if not files:
        raise FileNotFoundError(f"no images in {lq_dir}")
    rows, unavailable = [], {}
    for method in methods:
        row = {"method": method, "faces": len(files), "status": "ok"}
        rows.append(row)
        try:
            restore = build_method(method, sources, device)
        except (WeightsError, CheckpointError, FileNotFoundError, ImportError) as error:
            row["status"] = f"not run: {error}"
            logger.warning("%s not run: %s", method, error)
            continue
        outputs, row["ms_per_face"], row["peak_mib"] = restore_folder(restore, files, out_dir / method, device)
        row["ms_per_face"] *= 1000
        del restore
        row.update(score(outputs, gt_dir, metrics, metric_weights, device, unavailable))
    write_table(rows, metrics, unavailable, out_dir)
    return rows


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def write_table(rows: list[dict], metrics: tuple[str, ...], unavailable: dict[str, str], out_dir: Path) -> None:
    """``results.csv`` (one row per method) and ``results.md`` (the same table, notes for missing weights)."""
    columns = ["method", *metrics, "ms_per_face", "peak_mib", "faces", "status"]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "results.csv.part"
    with open(tmp, "w", newline="") as fout:
        writer = csv.DictWriter(fout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})
    os.replace(tmp, out_dir / "results.csv")

    arrows = {m: ("↓" if m in LOWER_IS_BETTER else "↑") for m in metrics}
    header = ["method", *(f"{m.upper()}{arrows[m]}" for m in metrics), "ms/face", "peak MiB", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        status = row["status"] if row["status"] == "ok" else "not run (see below)"
        cells = [row["method"], *(_cell(row.get(m)) for m in metrics), _cell(row.get("ms_per_face")),
                 _cell(row.get("peak_mib")), status]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {row['method']}: {row['status']}" for row in rows if row["status"] != "ok"]
    notes += [f"- metric {metric}: not computed: {reason}" for metric, reason in unavailable.items()]
    text = "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
    tmp = out_dir / "results.md.part"
    tmp.write_text(text)
    os.replace(tmp, out_dir / "results.md")
