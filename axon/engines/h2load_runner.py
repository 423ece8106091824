"""One h2load run, the parts every native runner shares: closed loop (:mod:`axon.engines.native`),
open loop (:mod:`axon.engines.native_open`) and a host's share (:mod:`axon.engines.hosts.h2load`).

- the command line (:func:`command`) and the one body checked before the run (:func:`precheck`);
- following the processes while Triton is scraped inside the window (:class:`Scrapes`,
  :func:`scrape_times`, :func:`follow`, :func:`collect`);
- reading what h2load left: its log (:func:`read_log`), its summary line (:func:`parse_summary`),
  its failures and why a run is incomplete (:func:`http_failures`, :func:`incomplete_reasons`);
- the count check against Triton's counters (:func:`verify`, :func:`count_slack`,
  :func:`server_failure_classes`).

Why the count check: h2load sees HTTP status, not gRPC status. A failed inference is HTTP 200
with a non-zero grpc-status trailer, so h2load counts it as a success; Triton's own counters,
scraped twice inside the window, are what say whether the requests h2load saw succeed did.

h2load's ``--log-file`` has one row per main-phase request: start (µs since the epoch, taken
when HEADERS is sent), HTTP status (-1: the stream failed), duration (µs).
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from axon.engines.base import H2LOAD, EngineRun, Workload, stop_h2load
from axon.engines.cpu import process_cpu_s
from axon.engines.loadgen import REJECTED, LoadSpec, shed_by_queue
from axon.engines.payloads import MODEL_INFER
from axon.errors import AxonError, ServerError
from axon.serving.endpoints import grpc_alive

# Triton is scraped this far inside h2load's main phase at each end (at most), so that the
# scrapes fall after the warm-up's requests and before h2load stops its streams.
SCRAPE_MARGIN_S = 0.25
SCRAPE_MARGIN_FRACTION = 0.2  # of the window, for short windows
# The shortest window the native engine times: Triton's counters are read twice inside it, a
# fifth of it from each edge, to check h2load's counts. A scrape took 2.5-5 ms here (2026-12-07,
# 2 cores); at c=64 a 0.01-0.02 s window ended before the second scrape or held no request,
# and its "req/s" came from a few dozen requests.
MIN_WINDOW_S = 0.1
MIN_WINDOW_WHY = "Triton's counters are read twice inside the window to check h2load's counts"
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
NO_H2LOAD = "the native engine needs h2load on PATH"

Scrape = Callable[[], dict]


def command(url: str, frame: Path, log: Path, spec: LoadSpec, shape: list[str], tls: bool, headers: dict[str, str]) -> list[str]:
    """h2load's command line for ``spec``'s window, posting ``frame`` to ModelInfer and logging every request.

    ``shape``: the load's own options (``-c``, ``-m``, ``-t``, and ``--rps`` in open loop).
    """
    cmd = [
        H2LOAD,
        "-D", f"{round(spec.duration_s * 1000)}ms",
        f"--warm-up-time={round(spec.warmup_s * 1000)}ms",
        *shape,
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
    """Send the exact body once over gRPC; raise if the server rejects it or answers wrongly.

    A body the server rejects would otherwise be timed as HTTP 200s: it never reaches the run.
    """
    import grpc

    from axon.serving.endpoints import read_ca

    creds = (
        grpc.ssl_channel_credentials(root_certificates=read_ca(getattr(endpoints, "ca_file", None))) if endpoints.tls else None
    )
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
                    raise ServerError(
                        f"native engine: the server rejected the request body before the run ({exc.code().name}: {exc.details()}); nothing was measured"
                    ) from None
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
            raise ServerError(
                "native engine: the server's answer to the request body differs from local onnxruntime; nothing was measured"
            )


def scrape_before(scrape: Scrape) -> dict:
    """Triton's counters before the run: the whole run's failures are counted from here."""
    try:
        return scrape()
    except ServerError as exc:
        raise ServerError(f"native engine: cannot read Triton's counters before the run: {exc}") from None


def scrape_after(scrape: Scrape) -> tuple[dict | None, str | None]:
    """(Triton's counters after the run, or None; why they could not be read, or None)."""
    try:
        return scrape(), None
    except ServerError as exc:
        return None, str(exc)


def server_down(stopped: str | None, metrics_error: str | None, endpoints: Any) -> bool:
    """Whether the run lost its server: stopped for it, or its metrics gone and gRPC silent too.

    A metrics endpoint can fail while gRPC still serves: only a silent gRPC endpoint is a dead server.
    """
    return stopped is not None or (metrics_error is not None and not grpc_alive(endpoints))


class Scrapes:
    """Triton's counters and h2load's CPU, sampled together at one moment inside the window.

    ``pids``: one h2load process (closed loop) or several (open loop's fan-out); each sample's
    ``cpu`` is their sum, ``cpus`` each one's (None where one could not be read).
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

    def window_metrics(self) -> tuple[dict | None, dict | None]:
        """Triton's counters at the two samples (the run's server deltas), or (None, None) short of two."""
        if len(self.samples) != 2:
            return None, None
        return self.samples[0]["metrics"], self.samples[1]["metrics"]

    def midpoints(self) -> tuple[float, float]:
        """The two samples' instants: each scrape's midpoint (two samples taken)."""
        a, b = self.samples
        return (a["t0"] + a["t1"]) / 2, (b["t0"] + b["t1"]) / 2

    def completed_between(self, done_at: np.ndarray, ok_mask: np.ndarray) -> int:
        """The OK requests whose completion (seconds since the epoch) fell between the two samples; 0 short of two."""
        if len(self.samples) != 2:
            return 0
        a_mid, b_mid = self.midpoints()
        return int(np.count_nonzero(ok_mask & (done_at >= a_mid) & (done_at < b_mid)))

    def cpu_between(self, index: int | None = None) -> tuple[float, float]:
        """(h2load's CPU seconds between the two samples, the cores that is): all processes, or process ``index``.

        NaN where either sample could not read it.
        """
        if index is None:
            cpus = [s["cpu"] for s in self.samples if s["cpu"] is not None]
        else:
            cpus = [s["cpus"][index] for s in self.samples if s.get("cpus") and s["cpus"][index] is not None]
        if len(cpus) != 2:
            return math.nan, math.nan
        used = cpus[1] - cpus[0]
        return used, used / (self.samples[1]["t0"] - self.samples[0]["t0"])


def scrape_times(window_start: float, duration_s: float, lead_s: float = 0.0) -> list[float]:
    """When Triton is scraped: inside the window by :data:`SCRAPE_MARGIN_S` (at most) at each end.

    ``lead_s`` moves the first scrape later: open loop staggers its clients over one tick.
    """
    margin = min(SCRAPE_MARGIN_S, duration_s * SCRAPE_MARGIN_FRACTION)
    return [window_start + margin + lead_s, window_start + duration_s - margin]


def follow(
    procs: list[subprocess.Popen],
    plan: list[float],
    scrapes: Scrapes,
    logs: list[Path],
    window_start: float,
    stall_s: float,
    on_progress,
    endpoints: Any = None,
    guard=None,
) -> str | None:
    """Until every h2load process exits: scrape at the planned moments, follow the logs; why it was stopped, if it was.

    h2load has no per-request deadline and keeps a dead connection's window open until -D ends,
    so a log that stops growing for ``stall_s`` inside the window prompts a liveness scrape:
    a server whose metrics endpoint and gRPC endpoint both fail to answer stops the run (as the
    python engine stops on UNAVAILABLE). A stalled server (SIGSTOP, a long pause) answers the
    scrape once it resumes: the run goes on, and the latencies show the stall. ``guard()`` (the
    run's server watch) is asked every pass: a dead server or one over its memory limit stops
    h2load at once, its reason returned.
    """

    def stop_all() -> None:
        for p in procs:
            stop_h2load(p)

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


def collect(procs: list[subprocess.Popen], spec: LoadSpec) -> list[tuple[str, str]]:
    """Each process's (stdout, stderr) once it exits; one hung past -D is killed (its return code says so)."""
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=spec.duration_s + spec.warmup_s + EXIT_GRACE_S))
        except subprocess.TimeoutExpired:
            p.kill()
            outputs.append(p.communicate())
    return outputs


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
    match = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", stdout
    )
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    return dict(zip(keys, map(int, match.groups()))) if match else {}


def http_failures(status: np.ndarray) -> dict[str, int]:
    """The requests h2load saw fail, by class: ``STREAM_FAILED`` (status -1) or ``HTTP_<code>``."""
    failures: dict[str, int] = {}
    for code, n in zip(*np.unique(status[status != HTTP_OK], return_counts=True)):
        failures[STREAM_FAILED if code == -1 else f"HTTP_{code}"] = int(n)
    return failures


def incomplete_reasons(
    starts: np.ndarray,
    returncode: int,
    stdout: str,
    stderr: str,
    duration_s: float,
    cut_short: bool,
    server_down: bool,
    longest_request_s: float = 0.0,
) -> list[str]:
    """Why one h2load process's window is incomplete (none: complete); ``starts``: its logged sends, seconds.

    ``cut_short``: Ctrl-C or a dead server stopped it; ``server_down``: the server was lost.
    ``longest_request_s``: the slowest logged request. h2load logs a request when it completes, so
    a stream's last logged send may precede the window's end by two requests' time (the last one
    answered, then one still in flight at the end): a 400 ms request is not a lost connection.
    """
    reasons: list[str] = []
    if cut_short and not server_down:
        reasons.append("interrupted")
    elif returncode != 0 and not cut_short:
        reasons.append(f"h2load exited with code {returncode}: {(stderr or stdout).strip().splitlines()[-1:] or ''}")
    if not len(starts) and not cut_short:
        reasons.append("h2load completed no request (connection refused or closed)")
    if len(starts) and not cut_short:
        # The main phase is duration_s long from its first request: a log that ends well before that lost its streams.
        stopped_early = float(starts.min()) + duration_s - float(starts.max())
        if stopped_early > max(EARLY_END_S, EARLY_END_FRACTION * duration_s) + 2 * longest_request_s:
            reasons.append(f"h2load's streams stopped {stopped_early:.1f} s before the window's end (connection lost)")
    if server_down:
        reasons.append("server unavailable")
    return reasons


def measured_s(duration_s: float, starts: np.ndarray, ends: np.ndarray, cut_short: bool) -> float:
    """The window's length: ``duration_s``, or where it was cut short, from the first send to the last completion."""
    if not cut_short:
        return duration_s
    return max(float(ends.max() - starts.min()), 1e-9) if len(starts) else 1e-9


def count_slack(in_flight: int, rate: float, scraping_s: float, completed: int) -> int:
    """How far Triton's count between two scrapes may fall from the client's and still agree.

    The requests in flight at each scrape (2 ``in_flight``), those completing at ``rate``
    while the scrapes ran (``scraping_s`` together), and :data:`COUNT_SLACK_FRACTION` of the
    ``completed`` for timing.
    """
    return 2 * in_flight + math.ceil(rate * scraping_s) + math.ceil(COUNT_SLACK_FRACTION * completed)


def verify(rows: np.ndarray, ok_mask: np.ndarray, scrapes: Scrapes, pre: dict | None, post: dict | None, in_flight: int) -> dict:
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
    a_mid, b_mid = scrapes.midpoints()
    client = scrapes.completed_between(rows[:, 0] / 1e6 + rows[:, 2] / 1e6, ok_mask)
    server_success = int(b["metrics"]["success"] - a["metrics"]["success"])
    server_failures = int(b["metrics"]["failure"] - a["metrics"]["failure"])
    server_rejected = int(b["metrics"].get("rejected", 0) - a["metrics"].get("rejected", 0))
    rate = client / max(b_mid - a_mid, 1e-9)
    slack = count_slack(in_flight, rate, (a["t1"] - a["t0"]) + (b["t1"] - b["t0"]), client)
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


class H2loadEngine:
    """What the native engine's closed loop and open loop share as engines: one body, posted by
    native code; its counts checked against Triton's. Each loop's class says how it offers the load."""

    name = "native"
    payload_limit = 1  # h2load's -d sends one body for every request
    min_window_s = MIN_WINDOW_S
    min_window_why = MIN_WINDOW_WHY

    def __init__(self, check_body: bool = True):
        self.check_body = check_body

    def run(self, work: Workload) -> EngineRun:
        if work.scrape is None:
            raise AxonError("the native engine checks h2load's counts against Triton's metrics: it needs a metrics endpoint")
        return self.offer(work, work.expected[0] if work.expected else None)

    def offer(self, work: Workload, expected: dict[str, np.ndarray] | None) -> EngineRun:
        raise NotImplementedError
