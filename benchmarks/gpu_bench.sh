#!/usr/bin/env bash
# SGPN against GFPGAN v1.4 on a GPU: float32 and float16, batch 1 and 8, eager; then torch.compile at batch 1.
#
#   benchmarks/gpu_bench.sh prepare   # here: copy the pure-Python peers' packages into .gpu14/site
#   benchmarks/gpu_bench.sh [OUTDIR]  # on the GPU machine (python3 with CUDA torch, numpy, scipy, cv2, skimage)
#
# A machine without basicsr/gfpgan/facexlib/filterpy gets them from .gpu14/site (no registry needed).
# Tables and JSON rows go to OUTDIR (default benchmarks/gpu_out). With no GPU it runs the same on CPU, tiny
# (one round, batch 1) — a dry run of the script.
set -uo pipefail
cd "$(dirname "$0")/.."
SITE=.gpu14/site
if [ "${1:-}" = prepare ]; then
  src=$(python -c "import importlib.util as u, os; print(os.path.dirname(os.path.dirname(u.find_spec('basicsr').origin)))")
  rm -rf "$SITE" && mkdir -p "$SITE"
  for pkg in basicsr gfpgan facexlib filterpy; do cp -r "$src/$pkg" "$SITE/"; done
  find "$SITE" -name __pycache__ -prune -exec rm -rf {} +
  grep -qxF "/.gpu14/" .git/info/exclude || echo "/.gpu14/" >> .git/info/exclude
  exit 0
fi
OUTDIR=${1:-benchmarks/gpu_out}
mkdir -p "$OUTDIR"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=$(command -v python3 || command -v python)
if "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  DEVICE=cuda ROUNDS=10 BATCHES="1 8"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUTDIR/gpu.txt"
else
  DEVICE=cpu ROUNDS=1 BATCHES="1"; echo "no GPU: dry run on CPU" | tee "$OUTDIR/gpu.txt"
fi
bench() {  # NAME TIMEOUT ARGS...
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$PY" benchmarks/bench_speed.py --device "$DEVICE" --no-memory --rounds "$ROUNDS" \
    --out "$OUTDIR/$name.md" --json "$OUTDIR/$name.json" "$@" 2>&1 | grep -v "cpp_extension.py" | tee "$OUTDIR/$name.log"
}
# separate processes: a failure in one leaves the others' tables
bench eager_fp32 100 --batch $BATCHES --subjects gfpgan sgpn_generator sgpn_restore
bench eager_fp16 100 --batch $BATCHES --subjects gfpgan gfpgan_fp16 sgpn_generator_fp16 sgpn_restore_fp16
bench compiled 150 --batch 1 --subjects gfpgan gfpgan_fp16 sgpn_generator sgpn_generator_compiled sgpn_generator_fp16 sgpn_generator_compiled_fp16
