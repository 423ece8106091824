#!/usr/bin/env bash
# The docker backend's GPU path on a GPU host: Triton's NGC image with the NVIDIA runtime, serving
# the `gpu` repository (Triton's ONNX Runtime backend), brought up by axon through Docker Compose.
# It trains small models (with a gpu repository), checks one answer per model against local
# onnxruntime (`axon serve --backend docker --check`), then runs two benchmark cases through
# pytest-docker (`pytest benchmarks --triton=docker`, batching on and off) and prints their JSON's
# server block. Where a GPU, an engine with the NVIDIA runtime, or Compose is missing it says
# which and skips (exit 0; --require makes that exit 2).
#   scripts/gpu_container_check.sh [--require]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
require=; [ "${1:-}" = "--require" ] && require=1
skip() { echo "gpu_container_check: skipped: $*" >&2; [ "$require" = 1 ] && exit 2; exit 0; }

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || skip "no NVIDIA GPU (nvidia-smi missing or sees no device)"
command -v docker >/dev/null 2>&1 || skip "no docker command (install Docker and the NVIDIA Container Toolkit)"
docker info >/dev/null 2>&1 || skip "no Docker engine answers (start dockerd)"
docker info --format '{{json .Runtimes}}' | grep -q nvidia || skip "the engine has no nvidia runtime (install the NVIDIA Container Toolkit: nvidia-ctk runtime configure --runtime=docker)"
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || skip "no Docker Compose (docker compose v2 or docker-compose v1)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
image=${AXON_TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:25.12-py3}
if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "gpu_container_check: pulling $image (several GB, once)"
  docker pull "$image" || skip "cannot pull $image (no registry access? docker login nvcr.io)"
fi

work=$(mktemp -d /tmp/axon-gpu-container-XXXXXX)
trap 'rm -rf "$work"' EXIT
project=axon-gpucheck-$$  # the compose project (label) of every container this check starts
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" AXON_DOCKER_VARIANT=gpu AXON_GPU_REPOSITORY="$work/model_repository" AXON_DOCKER_PROJECT=$project
"$PYTHON" -m axon.cli train --rows 20000 --epochs 2 --out "$work/artifacts" --gpu-repository "$work/model_repository"
"$PYTHON" -m axon.cli serve --backend docker --artifacts "$work/artifacts" --batching both --check --log-dir "$work/logs"
"$PYTHON" -m pytest -q -p no:cacheprovider benchmarks --triton=docker --triton-docker-variant gpu -k "v1 and c16 and closed" \
  --axon-artifacts "$work/artifacts" --axon-duration 3 --axon-warmup 1 --benchmark-json "$work/gpu-container.json"
"$PYTHON" - "$work/gpu-container.json" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    r = b["extra_info"]["axon"]
    print(f"{b['name']}: {r['throughput_rps']:,.0f} req/s, p50 {r['latency_ms']['p50']:.2f} ms, server {json.dumps(r['server'])}")
PY
left=$(docker ps -a --format '{{.Label "com.docker.compose.project"}}' | grep "^$project" || true)
[ -z "$left" ] || { echo "gpu_container_check: containers left behind: $left" >&2; exit 1; }
echo "gpu_container_check: passed"
