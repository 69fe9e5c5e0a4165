#!/bin/sh
# Install torch into a virtual environment before the course, choosing the build:
#   sh scripts/install-torch.sh VENV_PYTHON MODE CPU_INDEX [pip flags, e.g. --constraint FILE]
# MODE auto: on Linux without an NVIDIA driver, the CPU wheel from CPU_INDEX (about 200 MB instead of several GB
#            of CUDA libraries); if that index cannot be reached, a one-line message and pip's default build.
#            Elsewhere (a GPU machine, macOS, whose wheels are CPU/MPS builds already) nothing here: pip's default.
# MODE cpu:  the CPU wheel from CPU_INDEX, and an error if that fails.
# MODE cuda: nothing here: pip's default build (the CUDA build on Linux).
set -u
py=$1; mode=$2; index=$3; shift 3

has_nvidia() { command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia/version ]; }
cpu_wheel() { "$py" -m pip install --retries 1 --timeout 20 "$@" torch --index-url "$index"; }

case "$mode" in
  auto)
    if [ "$(uname -s)" = Linux ] && ! has_nvidia; then
      cpu_wheel "$@" || echo "install-torch: the CPU wheel index $index could not be used; installing pip's default build of torch instead (TORCH=cuda does this on purpose)"
    fi ;;
  cpu)
    cpu_wheel "$@" || { echo "install-torch: TORCH=cpu, but installing torch from $index failed (offline? use TORCH=auto to fall back to pip's default build)" >&2; exit 1; } ;;
  cuda) ;;
  *) echo "install-torch: TORCH must be auto, cpu or cuda, got '$mode'" >&2; exit 2 ;;
esac
exit 0
