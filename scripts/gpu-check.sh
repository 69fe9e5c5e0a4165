#!/usr/bin/env bash
# make gpu-check: the course on a CUDA GPU, in under 5 minutes on one GPU. Run from the repository root:
#   make gpu-check                      (or: bash scripts/gpu-check.sh [PYTHON])
# 1. the GPU torch sees; 2. the unit tests (gvlib.get_device() is cuda there; device-parametrised tests run on cuda too);
# 3. each chapter's full-profile code path at a tiny budget (scripts/tiny_full_profile.py); 4. coursekit bench
# --device cuda (the k = 5000 estimator on 10,000 test images against the same GPU's matmul floor, training
# epochs at k = 1 and 50, 1 and 2 processes); 5. a 2-GPU data-parallel run of fit against one process (NCCL),
# where two GPUs are present. Data: $GVLIB_DATA (MNIST, binarized MNIST); nothing is downloaded unless
# TINY_OFFLINE=0. Each step prints its time; the log and the bench table go to $GPU_CHECK_OUT (runs/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-.venv/bin/python}}
OUT=${GPU_CHECK_OUT:-runs/gpu-check}
mkdir -p "$OUT"
export GVLIB_QUIET=1 TINY_OFFLINE=${TINY_OFFLINE:-1} PYTHONUNBUFFERED=1
failed=()
start=$(date +%s)
step() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "== gpu-check: $name"
  if "$@"; then echo "== gpu-check: $name: ok, $(( $(date +%s) - t0 )) s"
  else echo "== gpu-check: $name: FAILED (exit $?), $(( $(date +%s) - t0 )) s"; failed+=("$name"); fi
}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-check: torch.cuda.is_available() is False ($("$PY" -c 'import torch; print(torch.__version__)')):" \
       "this needs an NVIDIA GPU and the CUDA build of torch (make install TORCH=cuda)" >&2
  exit 2
fi
N_GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
step "GPU" "$PY" -c 'import torch; [print(f"cuda:{i}: {torch.cuda.get_device_name(i)}, "
  f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB") for i in range(torch.cuda.device_count())];
print("torch", torch.__version__, "CUDA", torch.version.cuda, "NCCL", torch.cuda.nccl.version())'
JOBS=$("$PY" -c 'import os; print(max(1, min(8, (os.cpu_count() or 2) // 2)))')
step "unit tests on cuda" env OMP_NUM_THREADS=1 "$PY" -m pytest -q -p no:cacheprovider \
  -n "$JOBS" --dist loadfile -ra tests
step "chapters, full profile, tiny budget" env GVLIB_DEVICE=cuda OMP_NUM_THREADS=4 \
  "$PY" scripts/tiny_full_profile.py chapters/[0-9]*.ipynb
step "bench on cuda" sh -c "\"$PY\" -m coursekit bench --device cuda | tee \"$OUT/bench-cuda.md\""
if [ "$N_GPUS" -ge 2 ]; then
  step "2-GPU data-parallel fit (NCCL)" env OMP_NUM_THREADS=1 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_ddp.py -k nccl
else
  echo "== gpu-check: 2-GPU data-parallel fit: skipped, $N_GPUS GPU visible (the 1-GPU NCCL path ran in the bench)"
fi
total=$(( $(date +%s) - start ))
echo "== gpu-check: $total s in all$([ "$total" -gt 300 ] && echo ', OVER the 5-minute budget')"
if [ ${#failed[@]} -gt 0 ]; then echo "== gpu-check FAILED: ${failed[*]}"; exit 1; fi
echo "== gpu-check passed"
