#!/bin/sh
# tritonserver with the same recipe as axon's EmbeddedServer (axon/serving/embedded.py), inside
# the container: the wheel's python backend with the Python 3.11 stub beside it (built into
# /opt/triton/backends), the wheel's libs on LD_LIBRARY_PATH (set in the Dockerfile), and the
# venv's python first on PATH so the stub imports onnxruntime and numpy from it.
# Loopback by default: with host networking 0.0.0.0 would expose Triton on every interface.
set -e
exec /opt/triton/bin/tritonserver \
  --model-repository="${AXON_MODEL_REPOSITORY:-/models}" \
  --backend-directory=/opt/triton/backends \
  --grpc-address="${AXON_ADDRESS:-127.0.0.1}" \
  --http-address="${AXON_ADDRESS:-127.0.0.1}" \
  --metrics-address="${AXON_ADDRESS:-127.0.0.1}" \
  --grpc-port="${AXON_GRPC_PORT:-8001}" \
  --http-port="${AXON_HTTP_PORT:-8000}" \
  --metrics-port="${AXON_METRICS_PORT:-8002}" \
  --allow-metrics=true \
  --allow-gpu-metrics=false \
  --allow-cpu-metrics=true \
  --strict-readiness=true \
  --exit-on-error=true \
  "$@"
