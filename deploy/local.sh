#!/usr/bin/env bash
# A local Dask cluster for `axon bench --dask`: one scheduler and N workers on 127.0.0.1.
#
#   deploy/local.sh [N_WORKERS]        # default 2; Ctrl-C stops what it started
#
# Every worker process is one "host" to axon. On one machine this checks the set-up and the
# numbers' plumbing, not scale: the workers share this machine's cores (docs/many-hosts.md).
set -euo pipefail
N=${1:-2}
PORT=${AXON_DASK_PORT:-8786}
# A lost load task is never rerun (axon's hosts also refuse a second attempt themselves).
export DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0
# A load task starts axon's worker processes; a daemonic Dask worker may not have children.
export DASK_DISTRIBUTED__WORKER__DAEMON=False
# The workers must import the same axon as the coordinator: run this from the checkout (or
# with axon installed) so that `python -c "import axon"` works in this shell.
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(cd "$(dirname "$0")/.." && pwd)"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait; }
trap cleanup EXIT INT TERM

dask scheduler --host 127.0.0.1 --port "$PORT" --no-dashboard &
pids+=($!)
for i in $(seq "$N"); do
  dask worker "tcp://127.0.0.1:$PORT" --host 127.0.0.1 --nthreads 1 --name "load-$i" --no-dashboard &
  pids+=($!)
done
echo "scheduler tcp://127.0.0.1:$PORT with $N workers; in another shell:"
echo "  axon bench --dask tcp://127.0.0.1:$PORT --concurrency 32 --duration 10"
wait
