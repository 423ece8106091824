"""The native engine: h2load (nghttp2) keeps N gRPC requests in flight from native code.

Open loop (``--rate``, constant spacing) lives in :mod:`axon.engines.native_open`; this module
holds the closed loop and the checks both share.

Why: on our 2-core machine a request costs Triton about 70 µs of CPU and the python engine
55-60 µs, so a Python client halves what it measures from c=16 up (issue 9: 0.56x of h2load's
throughput at c=64). h2load posts one pre-serialised ModelInfer frame over HTTP/2 and costs
about 0.1 core.

Its blind spot: h2load sees HTTP status, not gRPC status. A failed inference is HTTP 200 with
a non-zero grpc-status trailer, so h2load counts it as a success. Hence three checks:

1. before the run, the exact body is sent once over gRPC and its answer compared with local
   onnxruntime (:func:`precheck`): a body the server rejects never reaches the timed run;
2. during the window, Triton's success and failure counters are scraped twice inside h2load's
   main phase, and the successes Triton counted between the scrapes are compared with the
   requests h2load's log says completed between them; a disagreement beyond the requests that
   can be in flight marks the run unverified (not passed), with both numbers;
3. Triton's failures in that interval are failures of the run (``SERVER_FAILURE``), so the
   error budget sees them.

h2load's ``--log-file`` has one row per main-phase request: start (µs since the epoch, taken
when HEADERS is sent), HTTP status (-1: the stream failed), duration (µs). Those rows feed the
same HDR histogram as the python engine.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from axon.engines import H2LOAD, EngineRun, WorkerOutcome, Workload, h2load_version
from axon.engines.base import stop_h2load
from axon.engines.cpu import process_cpu_s
from axon.engines.loadgen import REJECTED, LoadSpec, shed_by_queue
from axon.engines.payloads import MODEL_INFER, grpc_frame
from axon.errors import AxonError, ServerError
from axon.records import stats
from axon.serving.embedded import grpc_alive

# Triton is scraped this far inside h2load's main phase at each end (at most), so that the
# scrapes fall after the warm-up's requests and before h2load stops its streams.
SCRAPE_MARGIN_S = 0.25
SCRAPE_MARGIN_FRACTION = 0.2  # of the window, for short windows
# Triton's and h2load's counts between the scrapes may differ by the requests in flight at
# each scrape (2 N), those completed while a scrape was under way, and this share for timing.
COUNT_SLACK_FRACTION = 0.01
# A log that stops this long before the window's end means h2load's streams died mid-run.
EARLY_END_S = 0.5
EARLY_END_FRACTION = 0.05
PRECHECK_TRIES = 10  # a check request shed by the server's queue policy is sent again, this often
PRECHECK_RETRY_S = 0.05
EXIT_GRACE_S = 30.0  # h2load exits right after -D; this bounds a hung one
HTTP_OK = 200
STREAM_FAILED = "STREAM_FAILED"  # h2load's status -1: reset stream, lost connection
SERVER_FAILURE = "SERVER_FAILURE"  # counted by Triton, invisible to h2load (HTTP 200)
CORRECTNESS_METHOD = "the one request body, checked once before the run"

Scrape = Callable[[], dict]


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
    c, m, t = topology(spec.concurrency, spec.connections)
    cmd = [
        H2LOAD,
        "-D", f"{round(spec.duration_s * 1000)}ms",
        f"--warm-up-time={round(spec.warmup_s * 1000)}ms",
        "-c", str(c), "-m", str(m), "-t", str(t),
        "-d", str(frame),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "--log-file", str(log),
    ]  # fmt: skip
    for key, value in headers.items():
        cmd += ["-H", f"{key.lower()}: {value}"]
    scheme = "https" if tls else "http"
    return [*cmd, f"{scheme}://{url}{MODEL_INFER}"]


def precheck(endpoints: Any, payload: bytes, expected: dict[str, np.ndarray] | None, timeout_s: float) -> None:
    """Send the exact body once over gRPC; raise if the server rejects it or answers wrongly."""
    import grpc

    from axon.serving.embedded import read_ca

    creds = grpc.ssl_channel_credentials(root_certificates=read_ca(getattr(endpoints, "ca_file", None))) if endpoints.tls else None
    channel = grpc.secure_channel(endpoints.grpc, creds) if creds else grpc.insecure_channel(endpoints.grpc)
    metadata = tuple((k.lower(), v) for k, v in endpoints.headers.items()) or None
    try:
        for attempt in range(1, PRECHECK_TRIES + 1):
            try:
                response = channel.unary_unary(MODEL_INFER)(payload, timeout=timeout_s, metadata=metadata)
                break
            except grpc.RpcError as exc:
                # A queue policy's rejection says nothing of the body: a busy server sheds the
                # check as it would any request, so it is asked again, a bounded number of times.
                if not shed_by_queue(exc.code().name, exc.details() or ""):
                    raise ServerError(f"native engine: the server rejected the request body before the run ({exc.code().name}: {exc.details()}); nothing was measured") from None
                if attempt == PRECHECK_TRIES:
                    raise ServerError(
                        f"native engine: the server's queue policy rejected all {PRECHECK_TRIES} check requests ({exc.details()}), so the body could not be checked; "
                        "nothing was measured (--engine python checks answers during the run)"
                    ) from None
                time.sleep(PRECHECK_RETRY_S)
    finally:
        channel.close()
    if expected is not None:
        from axon.workload.requests import decode, matches

        if not matches(decode(response), expected):
            raise ServerError("native engine: the server's answer to the request body differs from local onnxruntime; nothing was measured")


def read_log(path: Path) -> np.ndarray:
    """h2load's log as an (n, 3) int64 array: start µs since the epoch, status, duration µs."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return np.zeros((0, 3), dtype=np.int64)
    values = np.array(text.split(), dtype=np.int64)
    return values[: len(values) // 3 * 3].reshape(-1, 3)  # a row cut by a kill is dropped


def parse_summary(stdout: str) -> dict[str, int]:
    """h2load's 'requests:' line: total, started, done, succeeded, failed, errored, timeout."""
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", stdout)
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    return dict(zip(keys, map(int, match.groups()))) if match else {}


class _Scrapes:
    """Triton's counters and h2load's CPU, sampled together at one moment inside the window.

    ``pids``: one h2load process (closed loop) or several (open loop's fan-out); ``cpu`` is
    their sum, ``cpus`` each one's (None where one could not be read).
    """

    def __init__(self, scrape: Scrape, pids: int | list[int]):
        self.scrape = scrape
        self.pids = [pids] if isinstance(pids, int) else list(pids)
        self.samples: list[dict] = []
        self.error: str | None = None

    def take(self) -> None:
        t0 = time.time()
        cpus: list[float | None] = []
        for pid in self.pids:
            value = None
            with contextlib.suppress(psutil.Error):
                value = process_cpu_s(pid)
            cpus.append(value)
        cpu = None if None in cpus else sum(cpus)
        try:
            metrics = self.scrape()
        except ServerError as exc:
            self.error = str(exc)
            return
        t1 = time.time()
        self.samples.append({"metrics": metrics, "t0": t0, "t1": t1, "cpu": cpu, "cpus": cpus})


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
        raise AxonError("the native engine needs h2load on PATH")
    if check_body:
        precheck(endpoints, payload, expected, spec.timeout_s)
    connections, streams, threads = topology(spec.concurrency, spec.connections)
    info = {"name": "native", "tool": "h2load", "version": h2load_version(), "connections": connections, "streams_per_connection": streams, "threads": threads}
    if endpoints.tls:
        info["certificate_verified"] = False  # h2load encrypts but never verifies (see engines.H2LOAD_TLS_UNVERIFIED)
    with tempfile.TemporaryDirectory(prefix="axon-h2load-") as tmp:
        frame, log = Path(tmp) / "request.bin", Path(tmp) / "requests.log"
        frame.write_bytes(grpc_frame(payload))
        cmd = command(endpoints.grpc, frame, log, spec, endpoints.tls, endpoints.headers)
        try:
            pre = scrape()
        except ServerError as exc:
            raise ServerError(f"native engine: cannot read Triton's counters before the run: {exc}") from None
        launched = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        scrapes = _Scrapes(scrape, proc.pid)
        window_start = launched + spec.warmup_s
        margin = min(SCRAPE_MARGIN_S, spec.duration_s * SCRAPE_MARGIN_FRACTION)
        plan = [window_start + margin, window_start + spec.duration_s - margin]
        interrupted, stopped = False, None
        try:
            stopped = _wait(proc, plan, scrapes, log, window_start, spec.timeout_s, on_progress, endpoints, guard)
        except KeyboardInterrupt:
            interrupted = True
            stop_h2load(proc)
        try:
            stdout, stderr = proc.communicate(timeout=spec.duration_s + spec.warmup_s + EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()  # reported below through its return code
            stdout, stderr = proc.communicate()
        rows = read_log(log)
    post_error = None
    try:
        post = scrape()
    except ServerError as exc:
        post, post_error = None, str(exc)
    metrics_error = scrapes.error or post_error
    # A metrics endpoint can fail while gRPC still serves: only a silent gRPC endpoint is a dead server.
    server_down = stopped is not None or (metrics_error is not None and not grpc_alive(endpoints))
    outcome, extra = _outcome(spec, rows, proc.returncode, stdout, stderr, scrapes, pre, post, server_down, interrupted, stopped is not None, threads)
    if metrics_error is not None and not server_down:
        extra["metrics_error"] = metrics_error
    samples = scrapes.samples
    before = samples[0]["metrics"] if len(samples) == 2 else None
    after = samples[1]["metrics"] if len(samples) == 2 else None
    return EngineRun([outcome], before, after, interrupted, info, extra)


def _wait(procs: subprocess.Popen | list[subprocess.Popen], plan: list[float], scrapes: _Scrapes, logs: Path | list[Path], window_start: float, stall_s: float, on_progress, endpoints: Any = None, guard=None) -> str | None:
    """Until h2load exits (every process of a fan-out): scrape at the planned moments, follow the logs; why it was stopped, if it was.

    h2load has no per-request deadline and keeps a dead connection's window open until -D ends,
    so a log that stops growing for ``stall_s`` inside the window prompts a liveness scrape:
    a server whose metrics endpoint and gRPC endpoint both fail to answer stops the run (as the
    python engine stops on UNAVAILABLE). A stalled server (SIGSTOP, a long pause) answers the
    scrape once it resumes: the run goes on, and the latencies show the stall. ``guard()`` (the
    run's server watch) is asked every pass: a dead server or one over its memory limit stops
    h2load at once, its reason returned.
    """
    procs = procs if isinstance(procs, list) else [procs]

    def stop_all() -> None:
        for p in procs:
            stop_h2load(p)

    logs = logs if isinstance(logs, list) else [logs]
    logged, offsets = 0, [0] * len(logs)
    last_growth = time.time()
    while any(p.poll() is None for p in procs):
        stopped_by = guard() if guard is not None else None
        if stopped_by:
            stop_all()
            return stopped_by
        now = time.time()
        if plan and now >= plan[0]:
            plan.pop(0)
            scrapes.take()
        # Count rows as h2load appends them: cheap, and a signal from the run itself.
        grown = 0
        for i, log in enumerate(logs):
            with contextlib.suppress(FileNotFoundError), open(log, "rb") as fh:
                fh.seek(offsets[i])
                chunk = fh.read()
                offsets[i] += len(chunk)
                grown += chunk.count(b"\n")
        if grown or now < window_start:
            logged += grown
            last_growth = now
        elif now - last_growth > stall_s:
            try:
                scrapes.scrape()
                last_growth = now  # alive but slow: the latencies will show the stall
            except ServerError:
                if endpoints is not None and grpc_alive(endpoints, timeout_s=stall_s):
                    last_growth = time.time()  # only the metrics endpoint is gone
                else:
                    stop_all()
                    return "server unavailable"
        if on_progress is not None:
            on_progress(now - window_start, logged, math.nan)
        wake = min([0.1] + [max(t - time.time(), 0.0) for t in plan[:1]])
        time.sleep(max(wake, 0.001))
    return None


def _outcome(spec, rows, returncode, stdout, stderr, scrapes, pre, post, server_down, interrupted, stopped, threads) -> tuple[dict, dict]:
    """The common outcome from h2load's rows; cut short when ``interrupted`` (Ctrl-C) or ``stopped`` (a dead server)."""
    cut_short = interrupted or stopped
    starts, status, durations = rows[:, 0] / 1e6, rows[:, 1], rows[:, 2]
    ok_mask = status == HTTP_OK
    histogram = stats.new_histogram()
    values, counts = np.unique(np.clip(durations[ok_mask], stats.LOWEST_US, stats.HIGHEST_US), return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist()):
        histogram.record_value(value, count)
    failures: dict[str, int] = {}
    for code, n in zip(*np.unique(status[~ok_mask], return_counts=True)):
        key = STREAM_FAILED if code == -1 else f"HTTP_{code}"
        failures[key] = int(n)
    reasons: list[str] = []
    summary = parse_summary(stdout)
    if cut_short and not server_down:
        reasons.append("interrupted")
    elif returncode != 0 and not cut_short:
        reasons.append(f"h2load exited with code {returncode}: {(stderr or stdout).strip().splitlines()[-1:] or ''}")
    if not len(rows) and not cut_short:
        reasons.append("h2load completed no request (connection refused or closed)")
    first = float(starts.min()) if len(rows) else math.nan
    last_end = float((starts + durations / 1e6).max()) if len(rows) else math.nan
    measured_s = spec.duration_s if not cut_short else max(last_end - first, 1e-9) if len(rows) else 1e-9
    if len(rows) and not cut_short:
        stopped_early = first + spec.duration_s - float(starts.max())
        if stopped_early > max(EARLY_END_S, EARLY_END_FRACTION * spec.duration_s):
            reasons.append(f"h2load's streams stopped {stopped_early:.1f} s before the window's end (connection lost)")
    if server_down:
        reasons.append("server unavailable")
    verification = _verify(spec, rows, ok_mask, scrapes, pre, post)
    server_failures = verification.get("server_failures_in_window") or 0
    failures.update(server_failure_classes(verification))
    ok = max(int(ok_mask.sum()) - server_failures, 0)
    sent = int(len(rows))
    cpu = [s["cpu"] for s in scrapes.samples if s["cpu"] is not None]
    cores = (cpu[1] - cpu[0]) / (scrapes.samples[1]["t0"] - scrapes.samples[0]["t0"]) if len(cpu) == 2 else math.nan
    outcome = WorkerOutcome(
        index=0,
        latency=stats.encode(histogram),
        lag="",
        sent=sent,
        ok=ok,
        failures=failures,
        checked=1,  # the pre-run check of the one body every request carries
        mismatches=0,
        measured_s=measured_s,
        # Per h2load thread: each runs one event loop, so a thread near one core is the limit.
        client_cores=cores / threads,
        # h2load's CPU between the two scrapes and the requests completed between them.
        client_cpu_s=cpu[1] - cpu[0] if len(cpu) == 2 else math.nan,
        client_cpu_requests=verification.get("client_completed", 0),
        incomplete_reason="; ".join(dict.fromkeys(reasons)) or None,
        failure_details={},
        timeline=_timeline(spec, starts, ok_mask, durations) if spec.timeline_s and len(rows) else None,
    )
    return outcome, {"verification": verification, "h2load_summary": summary, "correctness_method": CORRECTNESS_METHOD}


def _timeline(spec, starts: np.ndarray, ok_mask: np.ndarray, durations: np.ndarray) -> list[dict]:
    """Per-slice counts and latency histograms, slices counted from the first logged request."""
    # h2load's main phase is duration_s long from its first request; a row logged at its very
    # end belongs to the last slice, not to a slice of its own.
    last = max(math.ceil(spec.duration_s / spec.timeline_s) - 1, 0)
    index = np.minimum(((starts - starts.min()) // spec.timeline_s).astype(np.int64), last)
    slices = []
    for i in np.unique(index).tolist():
        mine = index == i
        histogram = stats.new_histogram()
        values, counts = np.unique(np.clip(durations[mine & ok_mask], stats.LOWEST_US, stats.HIGHEST_US), return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            histogram.record_value(value, count)
        slices.append({"index": i, "ok": int(np.count_nonzero(mine & ok_mask)), "failed": int(np.count_nonzero(mine & ~ok_mask)), "latency": stats.encode(histogram)})
    return slices


def _verify(spec, rows, ok_mask, scrapes, pre, post, in_flight: int | None = None) -> dict:
    """Triton's successes between the two in-window scrapes against h2load's completions.

    ``in_flight``: the most requests that can be in flight (closed loop: the concurrency; open
    loop: every h2load stream).
    """
    # Whole run (warm-up and teardown included): informational. When -D ends h2load resets the
    # streams still in flight, and Triton may count those (up to N) as failures; only the
    # window's failures are failures of the run.
    whole = {"server_failures_whole_run": int(post["failure"] - pre["failure"]) if post else None}
    if len(scrapes.samples) != 2:
        return {**whole, "verified": False, "reason": scrapes.error or "the window was too short or ended before both scrapes"}
    a, b = scrapes.samples
    a_mid, b_mid = (a["t0"] + a["t1"]) / 2, (b["t0"] + b["t1"]) / 2
    done_at = rows[:, 0] / 1e6 + rows[:, 2] / 1e6
    client = int(np.count_nonzero(ok_mask & (done_at >= a_mid) & (done_at < b_mid)))
    server_success = int(b["metrics"]["success"] - a["metrics"]["success"])
    server_failures = int(b["metrics"]["failure"] - a["metrics"]["failure"])
    server_rejected = int(b["metrics"].get("rejected", 0) - a["metrics"].get("rejected", 0))
    rate = client / max(b_mid - a_mid, 1e-9)
    slack = 2 * (in_flight if in_flight is not None else spec.concurrency) + math.ceil(rate * ((a["t1"] - a["t0"]) + (b["t1"] - b["t0"]))) + math.ceil(COUNT_SLACK_FRACTION * client)
    # Every request h2load saw as HTTP 200 is either a Triton success or a Triton failure.
    verified = abs(server_success + server_failures - client) <= slack and server_success > 0
    return {
        **whole,
        "verified": bool(verified),
        "method": "Triton's success+failure counters vs requests h2load's log shows completed, between two scrapes inside the window",
        "interval_s": b_mid - a_mid,
        "client_completed": client,
        "server_success": server_success,
        "server_failures_in_window": server_failures,
        "server_rejected_in_window": server_rejected,
        "allowed_difference": slack,
    }


def server_failure_classes(verification: dict) -> dict[str, int]:
    """The window's failures Triton counted (h2load saw HTTP 200), by class.

    Triton's rejections (queue full, queue timeout) are ``REJECTED``, the class the python
    engine gives them, so shed load reads the same on both engines; the rest ``SERVER_FAILURE``.
    """
    failed = verification.get("server_failures_in_window") or 0
    rejected = min(verification.get("server_rejected_in_window") or 0, failed)
    classes = {REJECTED: rejected, SERVER_FAILURE: failed - rejected}
    return {code: n for code, n in classes.items() if n}


class NativeEngine:
    """h2load: one body, posted by native code; its counts checked against Triton's."""

    name = "native"
    payload_limit = 1  # h2load's -d sends one body for every request

    def __init__(self, check_body: bool = True):
        self.check_body = check_body

    def run(self, work: Workload) -> EngineRun:
        if work.scrape is None:
            raise AxonError("the native engine checks h2load's counts against Triton's metrics: it needs a metrics endpoint")
        expected = work.expected[0] if work.expected else None
        if work.spec.mode == "open":
            from axon.engines import native_open

            return native_open.run(work.spec, work.endpoints, work.payloads[0], expected, work.scrape, work.on_progress, self.check_body, work.guard)
        return run(work.spec, work.endpoints, work.payloads[0], expected, work.scrape, work.on_progress, work.client_bound_cores, self.check_body, work.guard)
