"""Short CPU training run that shows SGPN learning: validation PSNR over the run and the loss curves.

Runs ``basicsr train`` with ``options/train_sgpn_cpu_small.yml`` (128 px, narrow generator) on the real
faces in ``../shared/data/faces/``, then reads BasicSR's log and writes ``OUT/train_demo.png`` (losses
and validation PSNR/SSIM against the iteration) and ``OUT/train_demo.md`` (the numbers).

    python scripts/train_demo.py --iters 200 --out train_demo_out
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ITER_LINE = re.compile(r"iter:\s*([\d,]+),.*?\]\s*(.*)$")
VALUE = re.compile(r"(\w+): ([-+\d.e]+)")
VAL_METRIC = re.compile(r"# (psnr|ssim): ([\d.]+)")


def write_options(out: Path, shared: Path, iters: int, val_freq: int) -> Path:
    with open(REPO / "options" / "train_sgpn_cpu_small.yml") as fin:
        opt = yaml.safe_load(fin)
    opt["name"] = "sgpn_train_demo"
    opt["datasets"]["train"]["dataroot_gt"] = str(shared / "data" / "faces" / "real_lq_cropped")
    opt["datasets"]["val"]["dataroot_gt"] = str(shared / "data" / "faces" / "hq_aligned")
    opt["train"]["total_iter"] = iters
    opt["val"]["val_freq"] = val_freq
    opt["val"]["save_img"] = False
    opt["logger"].update(print_freq=5, save_checkpoint_freq=iters, use_tb_logger=False)
    path = out / "train_demo.yml"
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def parse_log(log: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[tuple[int, float]]]]:
    """``(losses, validation)``: ``{name: [(iteration, value), ...]}`` from a BasicSR training log."""
    losses, validation = defaultdict(list), defaultdict(list)
    last_iter = 0
    for line in log.read_text().splitlines():
        match = ITER_LINE.search(line)
        if match:
            last_iter = int(match.group(1).replace(",", ""))
            for name, value in VALUE.findall(match.group(2)):
                if name.startswith("l_"):
                    losses[name].append((last_iter, float(value)))
            continue
        match = VAL_METRIC.search(line)
        if match:
            points = validation[match.group(1)]
            if not points or points[-1][0] != last_iter:      # BasicSR validates the last iteration twice
                points.append((last_iter, float(match.group(2))))
    return losses, validation


def plot(losses, validation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in losses.items():
        ax_loss.plot(*zip(*points), label=name)
    ax_loss.set(xlabel="iteration", ylabel="loss", yscale="log", title="training losses")
    ax_loss.legend()
    iters, psnr = zip(*validation["psnr"])
    ax_val.plot(iters, psnr, marker="o", label="PSNR (dB)")
    ax_val.set(xlabel="iteration", ylabel="PSNR (dB)", title="validation (hq_aligned, fixed degradation)")
    if validation.get("ssim"):
        twin = ax_val.twinx()
        twin.plot(*zip(*validation["ssim"]), marker="s", color="tab:orange", label="SSIM")
        twin.set_ylabel("SSIM")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--val-freq", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("train_demo_out"))
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    options = write_options(out, args.shared.resolve(), args.iters, args.val_freq)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "basicsr_plugin", "train", "-opt", str(options)], cwd=out, env=env,
                   check=True)
    log = max((out / "experiments" / "sgpn_train_demo").glob("train_sgpn_train_demo_*.log"),
              key=lambda p: p.stat().st_mtime)
    losses, validation = parse_log(log)
    plot(losses, validation, out / "train_demo.png")
    psnr = validation["psnr"]
    lines = ["| iteration | val PSNR (dB) | val SSIM |", "| ---: | ---: | ---: |"]
    ssim = dict(validation.get("ssim", []))
    lines += [f"| {it} | {value:.2f} | {ssim.get(it, float('nan')):.3f} |" for it, value in psnr]
    summary = "\n".join(lines) + f"\n\nLoss curves and validation: {out / 'train_demo.png'}\n"
    (out / "train_demo.md").write_text(summary)
    print(summary)
    return 0 if psnr[-1][1] > psnr[0][1] else 1


if __name__ == "__main__":
    sys.exit(main())
