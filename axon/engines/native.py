"""The native engine's closed loop: h2load (nghttp2) keeps N gRPC requests in flight from native code.

Open loop (``--rate``, constant spacing) lives in :mod:`axon.engines.native_open`; what both
share (the command line, the scrapes, the count check) in :mod:`axon.engines.h2load_runner`.

Why: on our 2-core machine a request costs Triton about 70 µs of CPU and the python engine
55-60 µs, so a Python client halves what it measures from c=16 up (issue 9: 0.56x of h2load's
throughput at c=64). h2load posts one pre-serialised ModelInfer frame over HTTP/2 and costs
about 0.1 core.

Its blind spot: h2load sees HTTP status, not gRPC status. A failed inference is HTTP 200 with
a non-zero grpc-status trailer, so h2load counts it as a success. Hence three checks:

1. before the run, the exact body is sent once over gRPC and its answer compared with local
   onnxruntime (:func:`h2load_runner.precheck`): a body the server rejects never reaches the timed run;
2. during the window, Triton's success and failure counters are scraped twice inside h2load's
   main phase, and the successes Triton counted between the scrapes are compared with the
   requests h2load's log says completed between them; a disagreement beyond the requests that
   can be in flight marks the run unverified (not passed), with both numbers;
3. Triton's failures in that interval are failures of the run (``SERVER_FAILURE``), so the
   error budget sees them.

h2load's log rows feed the same HDR histogram as the python engine.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from axon.engines import EngineRun, WorkerOutcome, Workload, h2load_runner
from axon.engines.base import h2load_version, stop_h2load
from axon.engines.h2load_runner import H2loadEngine, Scrape, Scrapes
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import grpc_frame
from axon.errors import AxonError
from axon.records import stats


def topology(concurrency: int, connections: int | None, cores: int | None = None) -> tuple[int, int, int]:
    """(connections, streams per connection, threads) for N requests in flight.

    By default one connection carries all N streams, as one python-engine process does (one
    gRPC channel). ``connections`` models several client nodes; it must divide N.
    """
    c = connections or 1
    if c < 1 or concurrency % c:
        raise AxonError(f"--connections must divide the concurrency: {concurrency} requests in flight over {c} connections")
    threads = max(1, min(c, cores or os.cpu_count() or 1))
    return c, concurrency // c, threads


def command(url: str, frame: Path, log: Path, spec: LoadSpec, tls: bool, headers: dict[str, str]) -> list[str]:
    """h2load's command line for the closed loop: ``spec``'s N requests in flight as streams over its connections."""
    c, m, t = topology(spec.concurrency, spec.connections)
    return h2load_runner.command(url, frame, log, spec, ["-c", str(c), "-m", str(m), "-t", str(t)], tls, headers)


def run(
    spec: LoadSpec,
    endpoints: Any,
    payload: bytes,
    expected: np.ndarray | None,
    scrape: Scrape,
    on_progress: Callable[[float, int, float], None] | None = None,
    client_bound_cores: float = 0.8,
    check_body: bool = True,
    guard=None,
) -> EngineRun:
    """Run h2load for one closed-loop case and turn its log into the engines' common outcome.

    ``guard()`` returns why the run must stop now (the server died, or grew past its memory
    limit), or None; it is asked as often as h2load's log is read.
    """
    if h2load_version() is None:
        raise AxonError(h2load_runner.NO_H2LOAD)
    if check_body:
        h2load_runner.precheck(endpoints, payload, expected, spec.timeout_s)
    connections, streams, threads = topology(spec.concurrency, spec.connections)
    info = {
        "name": "native",
        "tool": "h2load",
        "version": h2load_version(),
        "connections": connections,
        "streams_per_connection": streams,
        "threads": threads,
    }
    if endpoints.tls:
        info["certificate_verified"] = False  # h2load encrypts but never verifies (see engines.H2LOAD_TLS_UNVERIFIED)
    with tempfile.TemporaryDirectory(prefix="axon-h2load-") as tmp:
        frame, log = Path(tmp) / "request.bin", Path(tmp) / "requests.log"
        frame.write_bytes(grpc_frame(payload))
        cmd = command(endpoints.grpc, frame, log, spec, endpoints.tls, endpoints.headers)
        pre = h2load_runner.scrape_before(scrape)
        launched = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        scrapes = Scrapes(scrape, proc.pid)
        window_start = launched + spec.warmup_s
        plan = h2load_runner.scrape_times(window_start, spec.duration_s)
        interrupted, stopped = False, None
        try:
            stopped = h2load_runner.follow(
                [proc], plan, scrapes, [log], window_start, spec.timeout_s, on_progress, endpoints, guard
            )
        except KeyboardInterrupt:
            interrupted = True
            stop_h2load(proc)
        [(stdout, stderr)] = h2load_runner.collect([proc], spec)
        rows = h2load_runner.read_log(log)
    post, post_error = h2load_runner.scrape_after(scrape)
    metrics_error = scrapes.error or post_error
    server_down = h2load_runner.server_down(stopped, metrics_error, endpoints)
    result, extra = outcome(
        spec, rows, proc.returncode, stdout, stderr, scrapes, pre, post, server_down, interrupted, stopped is not None, threads
    )
    if metrics_error is not None and not server_down:
        extra["metrics_error"] = metrics_error
    before, after = scrapes.window_metrics()
    return EngineRun([result], before, after, interrupted, info, extra)


def outcome(
    spec: LoadSpec,
    rows: np.ndarray,
    returncode: int,
    stdout: str,
    stderr: str,
    scrapes: Scrapes,
    pre: dict | None,
    post: dict | None,
    server_down: bool,
    interrupted: bool,
    stopped: bool,
    threads: int,
) -> tuple[WorkerOutcome, dict]:
    """The common outcome from one closed-loop h2load's rows, and the record's extras (its count check, its summary).

    Cut short when ``interrupted`` (Ctrl-C) or ``stopped`` (a dead server). ``pre``/``post``:
    Triton's counters around the run (None on a host: the coordinator holds them).
    """
    cut_short = interrupted or stopped
    starts, status, durations = rows[:, 0] / 1e6, rows[:, 1], rows[:, 2]
    ok_mask = status == h2load_runner.HTTP_OK
    failures = h2load_runner.http_failures(status)
    summary = h2load_runner.parse_summary(stdout)
    longest = float(durations.max()) / 1e6 if len(durations) else 0.0
    reasons = h2load_runner.incomplete_reasons(
        starts, returncode, stdout, stderr, spec.duration_s, cut_short, server_down, longest
    )
    verification = h2load_runner.verify(rows, ok_mask, scrapes, pre, post, in_flight=spec.concurrency)
    server_failures = verification.get("server_failures_in_window") or 0
    failures.update(h2load_runner.server_failure_classes(verification))
    cpu_s, cores = scrapes.cpu_between()
    result = WorkerOutcome(
        index=0,
        latency=stats.encode_microseconds(durations[ok_mask]),
        lag="",
        sent=int(len(rows)),
        ok=max(int(ok_mask.sum()) - server_failures, 0),
        failures=failures,
        checked=1,  # the pre-run check of the one body every request carries
        mismatches=0,
        measured_s=h2load_runner.measured_s(spec.duration_s, starts, starts + durations / 1e6, cut_short),
        # Per h2load thread: each runs one event loop, so a thread near one core is the limit.
        client_cores=cores / threads,
        # h2load's CPU between the two scrapes and the requests completed between them.
        client_cpu_s=cpu_s,
        client_cpu_requests=verification.get("client_completed", 0),
        incomplete_reason="; ".join(dict.fromkeys(reasons)) or None,
        failure_details={},
        timeline=_timeline(spec, starts, ok_mask, durations) if spec.timeline_s and len(rows) else None,
    )
    return result, {
        "verification": verification,
        "h2load_summary": summary,
        "correctness_method": h2load_runner.CORRECTNESS_METHOD,
    }


def _timeline(spec: LoadSpec, starts: np.ndarray, ok_mask: np.ndarray, durations: np.ndarray) -> list[dict]:
    """Per-slice counts and latency histograms, slices counted from the first logged request."""
    # h2load's main phase is duration_s long from its first request; a row logged at its very
    # end belongs to the last slice, not to a slice of its own.
    last = max(math.ceil(spec.duration_s / spec.timeline_s) - 1, 0)
    index = np.minimum(((starts - starts.min()) // spec.timeline_s).astype(np.int64), last)
    slices = []
    for i in np.unique(index).tolist():
        mine = index == i
        slices.append(
            {
                "index": i,
                "ok": int(np.count_nonzero(mine & ok_mask)),
                "failed": int(np.count_nonzero(mine & ~ok_mask)),
                "latency": stats.encode_microseconds(durations[mine & ok_mask]),
            }
        )
    return slices


class NativeEngine(H2loadEngine):
    """h2load in closed loop: N requests in flight, one body, its counts checked against Triton's."""

    def offer(self, work: Workload, expected: dict[str, np.ndarray] | None) -> EngineRun:
        return run(
            work.spec,
            work.endpoints,
            work.payloads[0],
            expected,
            work.scrape,
            work.on_progress,
            work.client_bound_cores,
            self.check_body,
            work.guard,
        )
