"""The direct engine: the same ONNX model run in-process with onnxruntime, no server at all.

SONIC's papers weigh this "direct" inference, where the model runs inside the experiment's
software on the trigger CPU, against inference as a service. This engine is the other side of
that scale: one caller, one onnxruntime session with one intra-op thread by default (an HLT
process would not let a model take more), calling ``session.run`` back to back on real
validation rows for a window. Each call's latency goes into the same HDR histogram, and the
process's CPU time over the window gives the client CPU per call and per row, the number the
direct-vs-service comparison needs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from axon.engines import EngineRun, WorkerOutcome, Workload
from axon.engines.cpu import own_cpu_s
from axon.errors import AxonError
from axon.records import stats

MAX_DISTINCT_BATCHES = 64  # cycled through, so a call does not always see the same rows


def session(onnx_path: Path, threads: int):
    import onnxruntime as ort

    if not Path(onnx_path).is_file():
        raise AxonError(f"no ONNX model at {onnx_path}; run `axon train` (with --models for this model) first")
    options = ort.SessionOptions()
    # One intra-op thread by default, as inside an HLT process; inter-op threads do not apply
    # to a sequential MLP graph.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def version() -> str:
    import onnxruntime as ort

    return f"onnxruntime/{ort.__version__}"


def run(
    onnx_path: Path, calls_inputs: list[dict[str, np.ndarray]], threads: int, duration_s: float, warmup_s: float, on_progress=None
) -> EngineRun:
    """Call the model back to back for ``warmup_s`` then ``duration_s`` on ``calls_inputs`` in turn; time every call in the window."""
    sess = session(onnx_path, threads)
    histogram = stats.new_histogram()
    clock = time.perf_counter
    t0 = clock()
    window_start, window_end = t0 + warmup_s, t0 + warmup_s + duration_s
    calls, i = 0, 0
    cpu_start = None
    next_progress = t0
    interrupted = False
    try:
        while True:
            start = clock()
            if start >= window_end:
                break
            if cpu_start is None and start >= window_start:
                cpu_start = own_cpu_s()
                start = clock()
            sess.run(None, calls_inputs[i % len(calls_inputs)])
            done = clock()
            i += 1
            if start >= window_start:
                calls += 1
                stats.record_seconds(histogram, done - start)
            if on_progress is not None and done >= next_progress:
                on_progress(done - window_start, calls, math.nan)
                next_progress = done + 0.5
    except KeyboardInterrupt:
        interrupted = True
    end = min(clock(), window_end)
    cpu_s = own_cpu_s() - cpu_start if cpu_start is not None else math.nan
    measured_s = max(end - window_start, 1e-9)
    outcome = WorkerOutcome(
        index=0,
        latency=stats.encode(histogram),
        lag="",
        sent=calls,
        ok=calls,
        failures={},
        checked=0,
        mismatches=0,
        measured_s=measured_s,
        client_cores=cpu_s / measured_s,
        client_cpu_s=cpu_s,
        client_cpu_requests=calls,
        incomplete_reason="interrupted" if interrupted else None,
    )
    info = {"name": "direct", "tool": "onnxruntime", "version": version(), "threads": threads}
    return EngineRun(
        [outcome], None, None, interrupted, info, {"correctness_method": "none needed: the reference itself (local onnxruntime)"}
    )


class DirectEngine:
    """The model in-process: no server, no payloads; the reference model is what it runs."""

    name = "direct"
    payload_limit = 0

    def __init__(self, threads: int = 1):
        if threads < 1:
            raise AxonError(f"threads must be >= 1, got {threads}")
        self.threads = threads

    def run(self, work: Workload) -> EngineRun:
        if work.reference_onnx is None or work.features is None:
            raise AxonError("the direct engine runs a local model: it needs the ONNX file and rows")
        spec = work.spec
        return run(work.reference_onnx, work.features, self.threads, spec.duration_s, spec.warmup_s, work.on_progress)
