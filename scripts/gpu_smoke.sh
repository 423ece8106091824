#!/usr/bin/env bash
# GPU smoke test: the embedded tritonserver (nvidia-pytriton wheel) with the python-backend
# model on an NVIDIA GPU (the ONNX weights evaluated by torch on CUDA), no Docker needed.
# It trains a small model, starts the server, checks answers against local onnxruntime, sends
# bursts of requests at concurrency 1 and 64 (batching on and off) and prints throughput and
# latency. Without a GPU it fails with a clear message and exit code 2.
#   scripts/gpu_smoke.sh [--requests N] [--engine torch|onnxruntime] [--device cuda|cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
device=cuda
for arg in "$@"; do [ "$arg" = "cpu" ] && device=cpu; done
if [ "$device" = cuda ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_smoke: no NVIDIA GPU here (nvidia-smi missing or sees no device); this script needs one" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" scripts/gpu_smoke.py "$@"
