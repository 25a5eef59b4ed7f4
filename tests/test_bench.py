"""Quality benchmark: pair builder, `sgpn bench` over every method with generated weights, missing weights reported."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sgpn_arch.cli import main
from sgpn_arch.eval.bench import make_pairs


def test_pairs_are_reproducible_and_aligned(faces_dir, tmp_path):
    hq, lq = make_pairs(faces_dir / "hq_aligned", tmp_path / "a", seed=3)
    make_pairs(faces_dir / "hq_aligned", tmp_path / "b", seed=3)
    make_pairs(faces_dir / "hq_aligned", tmp_path / "c", seed=4)
    names = sorted(p.name for p in lq.iterdir())
    assert names == sorted(p.name for p in hq.iterdir()) == ["gpen_00002.png", "gpen_00009.png"]
    for name in names:
        a, b, c = (cv2.imread(str(tmp_path / run / "lq" / name)) for run in "abc")
        assert a.shape == (512, 512, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
        gt = cv2.imread(str(hq / name))
        assert cv2.PSNR(a, gt) < 35                  # really degraded ...
        assert np.corrcoef(cv2.GaussianBlur(a, (0, 0), 8).ravel(),   # ... but still the same face
                           cv2.GaussianBlur(gt, (0, 0), 8).ravel())[0, 1] > 0.8


@pytest.fixture(scope="module")
def metric_weights(module_mktemp) -> dict[str, Path]:
    """Randomly initialised metric networks in their official layouts, and random FFHQ statistics."""
    from facexlib.alignment.awing_arch import FAN
    from torchvision.models import vgg16

    from sgpn_arch.eval.metrics import FIDInception
    from sgpn_arch.nets.arcface import ArcFaceResNet18

    folder = module_mktemp("metric_weights")
    torch.manual_seed(0)
    files = {"vgg16": vgg16(weights=None).state_dict(), "arcface": ArcFaceResNet18().state_dict(),
             "fan": FAN(num_modules=4, num_landmarks=98).state_dict(), "fid": FIDInception().net.state_dict(),
             "fid-stats": {"mean": np.random.default_rng(0).normal(size=2048) * 0.1, "cov": np.eye(2048) * 0.01}}
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.pth"
        torch.save(content, paths[name])
    return paths


@pytest.fixture(scope="module")
def peer_weights(module_mktemp) -> dict[str, Path]:
    from sgpn_arch.eval.peers import PEERS

    folder = module_mktemp("peer_weights")
    paths = {}
    for name in ("gfpgan", "gpen", "codeformer"):
        torch.manual_seed(1)
        _, official = PEERS[name].build()
        paths[name] = folder / f"{name}.pth"
        torch.save(official.state_dict() if name == "gpen" else {"params_ema": official.state_dict()}, paths[name])
    return paths


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


@pytest.mark.slow
def test_bench_scores_every_method_with_every_metric(faces_dir, tmp_path, tiny_weights, bfm_dir, metric_weights,
                                                     peer_weights, monkeypatch, capsys):
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(tmp_path / "empty_cache"))   # only the files given below exist
    hq, lq = make_pairs(faces_dir / "hq_aligned", tmp_path / "pairs", seed=0, limit=1)   # peers: seconds per face
    out = tmp_path / "bench"
    code = main(["bench", "--lq", str(lq), "--gt", str(hq), "-o", str(out), "--offline", "--device", "cpu",
                 "--metrics", "psnr", "ssim", "lpips", "deg", "lmd", "niqe",
                 "--generator", str(tiny_weights["sgpn"]), "--d3dfr", str(tiny_weights["d3dfr"]), "--bfm", str(bfm_dir),
                 "--gfpgan", str(peer_weights["gfpgan"]), "--gpen", str(peer_weights["gpen"]),
                 "--codeformer", str(peer_weights["codeformer"]),
                 "--vgg16-weights", str(metric_weights["vgg16"]), "--arcface-weights", str(metric_weights["arcface"]),
                 "--fan-weights", str(metric_weights["fan"])])
    assert code == 0
    with open(out / "results.csv") as fin:
        rows = {row["method"]: row for row in csv.DictReader(fin)}
    assert list(rows) == ["sgpn", "gfpgan", "gpen", "codeformer"]
    for method in rows:
        row = rows[method]
        assert row["status"] == "ok"
        for metric in ("psnr", "ssim", "lpips", "deg", "lmd", "niqe", "ms_per_face", "peak_mib"):
            assert math.isfinite(float(row[metric])), (method, metric)
        assert float(row["ms_per_face"]) > 0 and float(row["peak_mib"]) > 100
        restored = sorted((out / method).iterdir())
        assert [p.name for p in restored] == ["gpen_00002.png"]
        expected = np.mean([_psnr(cv2.imread(str(p)), cv2.imread(str(hq / p.name))) for p in restored])
        assert float(row["psnr"]) == pytest.approx(expected, abs=1e-3)
        assert 0 <= float(row["deg"]) <= 180 and 0 <= float(row["ssim"]) <= 1
    table = (out / "results.md").read_text()
    assert "| sgpn |" in table and "| codeformer |" in table and "PSNR↑" in table and "LPIPS↓" in table
    assert "| sgpn |" in capsys.readouterr().out


def test_lq_only_folder_gives_no_reference_metrics_and_reports_what_is_missing(faces_dir, tmp_path, tiny_weights,
                                                                            bfm_dir, metric_weights, monkeypatch):
    from sgpn_arch.eval.bench import MethodSources, run_bench

    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(tmp_path / "empty_cache"))
    crops = tmp_path / "crops"
    crops.mkdir()
    for name in ("codeformer_0342.png", "gfpgan_Adele_crop.png"):
        (crops / name).write_bytes((faces_dir / "real_lq_cropped" / name).read_bytes())
    sources = MethodSources(weights={"sgpn": str(tiny_weights["sgpn"])}, d3dfr=str(tiny_weights["d3dfr"]),
                            bfm_folder=str(bfm_dir), allow_download=False)
    rows = run_bench(crops, tmp_path / "out", methods=("sgpn", "codeformer"), sources=sources)
    assert rows[0]["status"] == "ok" and math.isfinite(rows[0]["niqe"])
    assert "psnr" not in rows[0] and "fid" not in rows[0]
    assert rows[1]["status"].startswith("not run") and "codeformer.pth" in rows[1]["status"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "PSNR" not in table and "metric fid: not computed" in table and "inception" in table.lower()
    assert "| codeformer | – |" in table and "- codeformer: not run" in table

    rows = run_bench(crops, tmp_path / "out2", methods=("sgpn",), metrics=("fid",), sources=sources,
                     metric_weights={"fid": metric_weights["fid"], "fid_stats": metric_weights["fid-stats"]})
    assert math.isfinite(rows[0]["fid"]) and rows[0]["fid"] > 0
