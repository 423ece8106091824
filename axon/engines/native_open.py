"""The native engine's open loop: h2load ``--rps``, every latency timed from when it was due.

Why: the python engine cannot keep a schedule above ~3,500 req/s on our 2 cores (issue 19),
so open-loop capacity was the client's number. h2load keeps the schedule from native code.

How h2load 1.52 paces (h2load.cc, ``rps_cb``; measured here too): ``--rps R`` is per client
(connection). A timer fires every ``max(10 ms, 1/R)`` and releases the requests that fell due
since the last tick (``round(elapsed * R)``); a released request that finds all ``-m``
streams busy waits for the next stream to close. So requests are *released in 10 ms ticks*:
request k of a client falls due at ``t0 + k/R`` and is released at the first tick after that.
Timing from ``t0 + k/R`` itself would charge every request up to 10 ms (5 ms on average) of
h2load's own batching, a fixed artefact of the generator that would also trip the 10 ms
"client fell behind" rule on every run. Timing from the actual send hides a stalled server
(coordinated omission): the requests it could not send during the stall start late and look
fast. So latency runs from the **release tick** (the generator's own intended send time), as
wrk2 does with its schedule, and the record says the arrivals come in ticks (``tick_ms``).
The tick is read from h2load's own log, not assumed (:mod:`axon.engines.native_tick`).

The log has no client id, so every client is its own h2load process (``-c 1``) with its own
log: its rows are one schedule. Where one process cannot reach the rate, the rate is spread
over several (fan-out), and the record says how many.

Rows are reconstructed per process (:func:`reconstruct`):

- rows sorted by start; h2load logs a request when it closes in the main phase, so from the
  first logged completion on, every request sent is logged: a run of consecutive indices k;
- the uniform schedule ``t0 + k/R`` anchored on the request sent earliest relative to it;
- the tick grid's phase from where the sends cluster modulo the tick;
- due time = the first tick at or after ``t0 + k/R``; lag = send - due; latency = close - due
  (from the send when the estimate puts the due time after the send, as the python engine does);
- whose lag it is: a late send is the *server's* when, at its due time, the server had held a
  request for longer than the lag limit or every stream was busy; otherwise the *client's*
  (h2load itself was late). Only the client's lag can flag the run "behind".
"""

from __future__ import annotations

import math
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axon.engines import h2load_runner
from axon.engines.base import EngineRun, WorkerOutcome, Workload, h2load_version, stop_h2load
from axon.engines.h2load_runner import H2loadEngine, Scrapes
from axon.engines.loadgen import CLIENT_OVERLOAD, MAX_SCHEDULE_LAG_S, LoadSpec
from axon.engines.native_tick import CHECKED_TICKS, RPS_TICK_S, TICK_AGREES, measure_tick, tick_info, tick_problem, tick_s
from axon.engines.payloads import grpc_frame
from axon.errors import AxonError
from axon.records import stats

# One h2load process (one client, one event loop) is asked for at most this rate; above it
# the rate is spread over several processes. Measured 2026-12-01 on our 2-core machine: one
# process kept 12,000/s on schedule (issue 19); 10,000 leaves headroom on a busy machine.
MAX_RATE_PER_CLIENT = 10_000.0
# Streams per client: enough for STREAM_HEADROOM_S of latency at the client's rate, so a
# healthy server (p99 well under the 25 ms budget) never exhausts them; a stalled server does,
# and the requests it holds are then timed from their due time anyway.
STREAM_HEADROOM_S = 0.1
MIN_STREAMS = 64
MAX_STREAMS = 4096
# The uniform schedule is anchored on the earliest send relative to it, so it runs late by that
# send's own few microseconds: a tick this close before a due time counts as at it.
DUE_SLACK_S = 0.00002
PHASE_BIN_S = 0.0001


def open_topology(rate: float, connections: int | None = None, max_in_flight: int | None = None) -> tuple[int, int, float]:
    """(clients, streams per client, rate per client) for ``rate`` requests/s.

    ``connections`` fixes the number of clients (each one h2load process with one connection);
    by default just enough that none is asked for more than :data:`MAX_RATE_PER_CLIENT`.
    ``max_in_flight`` bounds the streams of all clients together (each gets its share, rounded
    down); by default each has enough for :data:`STREAM_HEADROOM_S` of latency.
    """
    if connections is not None and connections < 1:
        raise AxonError(f"--connections must be >= 1, got {connections}")
    clients = connections or max(1, math.ceil(rate / MAX_RATE_PER_CLIENT))
    per_client = rate / clients
    if max_in_flight is not None:
        if max_in_flight < clients:
            raise AxonError(
                f"an in-flight bound of {max_in_flight} is below the {clients} h2load connections this rate needs (at most {MAX_RATE_PER_CLIENT:,.0f} req/s each)"
            )
        return clients, max_in_flight // clients, per_client
    streams = min(MAX_STREAMS, max(MIN_STREAMS, math.ceil(per_client * STREAM_HEADROOM_S)))
    return clients, streams, per_client


def not_sent(summary: dict[str, int], rate: float, duration_s: float, peak_in_flight: int, streams: int) -> int:
    """Requests that fell due in one client's window but were never sent: every stream was busy.

    h2load releases ``round(elapsed * rate)`` requests at each tick of its timer and counts in
    ``started`` those it really sent in the main phase; a released request waits for a free
    stream, and one still waiting when the window ends is never sent. Those are the load the
    in-flight bound shed.

    ``started`` alone is not enough: the window's edges fall between ticks, so a client that
    kept up starts anywhere from a request short of ``rate * duration`` to a tick's worth over
    it (measured 2026-12-01, 1,000/s over 1 s: 999 to 1,011). A request can only wait for a
    stream when every stream was busy, so the shortfall counts only if the log saw all
    ``streams`` in flight at once (``peak_in_flight``); then it may include up to one tick's
    release at the window's end, which the client shed anyway.
    """
    if "started" not in summary or peak_in_flight < streams:
        return 0
    return max(0, round(rate * duration_s) - summary["started"])


def peak_in_flight(rows: np.ndarray) -> int:
    """The most requests one client's log (start µs, status, duration µs) had in flight at once."""
    if not len(rows):
        return 0
    starts, ends = rows[:, 0], rows[:, 0] + rows[:, 2]
    # A request that ends as another starts frees its stream first: ends sort before starts.
    times = np.concatenate([ends, starts])
    steps = np.concatenate([np.full(len(ends), -1), np.full(len(starts), 1)])
    order = np.lexsort((steps, times))
    return int(np.max(np.cumsum(steps[order])))


def command(
    url: str, frame: Path, log: Path, spec: LoadSpec, rate: float, streams: int, tls: bool, headers: dict[str, str]
) -> list[str]:
    """h2load's command line for one open-loop client: one connection, ``streams`` streams, ``rate`` requests/s."""
    shape = ["-c", "1", "-m", str(streams), "-t", "1", f"--rps={rate:.10g}"]
    return h2load_runner.command(url, frame, log, spec, shape, tls, headers)


@dataclass
class Schedule:
    """One client's logged requests in send order, with their due times (seconds since the epoch)."""

    start: np.ndarray
    end: np.ndarray
    status: np.ndarray
    due: np.ndarray
    uniform: np.ndarray  # t0 + k/R, before h2load's ticks
    server_held: np.ndarray  # bool: a late send the server, not h2load, is to blame for
    tick: float = RPS_TICK_S  # the release tick the due times were put on
    tick_measured: bool = False  # read from the log (:func:`measure_tick`), not assumed
    tick_read: float | None = None  # what the log showed (``tick`` is a checked release's exact one where they agree)

    @property
    def lag(self) -> np.ndarray:
        return self.start - self.due

    @property
    def latency(self) -> np.ndarray:
        """From the due time (the send, where that came first): the corrected view."""
        return self.end - np.minimum(self.due, self.start)

    @property
    def client_lag(self) -> np.ndarray:
        """The lag h2load itself is to blame for (0 where the server held it back)."""
        return np.where(self.server_held, 0.0, np.maximum(self.lag, 0.0))


def reconstruct(
    rows: np.ndarray, rate: float, streams: int, lag_limit_s: float = MAX_SCHEDULE_LAG_S, version: str | None = None
) -> Schedule:
    """One client's h2load log rows (start µs, status, duration µs) -> its schedule. See the module doc.

    The release tick is read from the rows (:func:`measure_tick`); where it agrees with the
    checked ``version``'s (within :data:`TICK_AGREES`), that exact tick is used; where the rows
    show none, h2load 1.52's (:func:`tick_s`) stands in, and ``tick_measured`` says so.
    """
    if not len(rows):
        empty = np.zeros(0)
        return Schedule(empty, empty, np.zeros(0, dtype=np.int64), empty, empty, np.zeros(0, dtype=bool), tick_s(rate))
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    base_us = int(rows[0, 0])
    # Relative seconds keep float64's resolution far below a microsecond.
    start_all = (rows[:, 0] - base_us) / 1e6
    end_all = start_all + rows[:, 2] / 1e6
    keep = start_all >= end_all.min()
    start, end, status = start_all[keep], end_all[keep], rows[keep, 1]
    k = np.arange(len(start))
    t0 = float(np.min(start - k / rate)) if len(start) else 0.0
    uniform = t0 + k / rate
    measured = measure_tick(start, rate)
    tick = measured if measured is not None else tick_s(rate)
    if measured is not None and version in CHECKED_TICKS:
        checked = max(CHECKED_TICKS[version], 1.0 / rate)
        tick = checked if abs(measured - checked) <= TICK_AGREES * checked else measured
    due = _due_ticks(start, uniform, t0, tick)
    held = _server_held(start_all, end_all, due, start, streams, lag_limit_s)
    offset = base_us / 1e6
    return Schedule(
        start + offset, end + offset, status, due + offset, uniform + offset, held, tick, measured is not None, measured
    )


def _due_ticks(start: np.ndarray, uniform: np.ndarray, t0: float, tick: float) -> np.ndarray:
    """The tick of h2load's timer that released each request: the first at or after its uniform due time.

    The timer's ticks wander by about half a millisecond either way (measured: batches 7-12 ms
    apart at a 10 ms tick on a busy machine), so a fixed grid alone would put a request due
    just after an early-firing tick on that tick, not the next one: a whole tick of phantom lag.
    Hence: the grid's phase is the median phase of the batches (groups of sends closer than a
    quarter tick); each request gets the grid tick at or after its uniform time, and the next
    one where the batch observed at that tick was sent before the request fell due.
    """
    if not len(start):
        return start
    gaps = np.diff(start)
    batch = start[np.r_[0, np.nonzero(gaps > tick / 4)[0] + 1]]
    phases = np.mod(batch - t0, tick)
    bins = max(int(round(tick / PHASE_BIN_S)), 1)
    counts = np.bincount(np.minimum((phases / tick * bins).astype(np.int64), bins - 1), minlength=bins)
    # The densest phase (a +-1 ms circular window, so a cluster straddling 0 is kept whole),
    # then the median of the batches near it.
    width = max(int(round(0.001 / PHASE_BIN_S)), 1)
    smooth = sum(np.roll(counts, s) for s in range(-width, width + 1)) if bins > 2 * width else counts
    centre = (int(np.argmax(smooth)) + 0.5) / bins * tick
    delta = np.mod(phases - centre + tick / 2, tick) - tick / 2  # signed distance to the centre
    near = delta[np.abs(delta) <= 0.001]
    grid = t0 + centre + (float(np.median(near)) if len(near) else 0.0)
    due = grid + tick * np.ceil((uniform - DUE_SLACK_S - grid) / tick)
    # The batch observed at that tick, if any: fired before the request was due -> the next tick released it.
    j = np.clip(np.searchsorted(batch, due), 1, len(batch) - 1) if len(batch) > 1 else np.zeros(len(due), dtype=np.int64)
    nearest = (
        np.where(np.abs(batch[j] - due) < np.abs(batch[j - 1] - due), batch[j], batch[j - 1])
        if len(batch) > 1
        else np.full(len(due), batch[0])
    )
    early = (np.abs(nearest - due) <= tick / 4) & (nearest < uniform - DUE_SLACK_S)
    return due + tick * early


def _server_held(
    start_all: np.ndarray, end_all: np.ndarray, due: np.ndarray, start: np.ndarray, streams: int, lag_limit_s: float
) -> np.ndarray:
    """For each request: when it fell due, had the server held a request longer than the lag limit, or were all streams busy?"""
    if not len(due):
        return np.zeros(0, dtype=bool)
    order = np.argsort(end_all, kind="stable")
    ends_sorted = end_all[order]
    # The oldest request still in flight at time t: the smallest start among those ending after t.
    suffix_min_start = np.minimum.accumulate(start_all[order][::-1])[::-1]
    i = np.searchsorted(ends_sorted, due, side="right")
    oldest = np.where(i < len(ends_sorted), suffix_min_start[np.minimum(i, len(ends_sorted) - 1)], np.inf)
    held_long = (oldest < due) & (due - oldest > lag_limit_s)
    starts_sorted = np.sort(start_all)
    in_flight = np.searchsorted(starts_sorted, due, side="left") - i
    late = (start - due) > lag_limit_s
    return late & (held_long | (in_flight >= streams - 1))


def histogram_of(seconds: np.ndarray) -> str:
    return stats.encode_microseconds(seconds * 1e6)


def run(
    spec: LoadSpec, endpoints: Any, payload: bytes, expected, scrape, on_progress=None, check_body: bool = True, guard=None
) -> EngineRun:
    """Run the open-loop case on h2load process(es) and turn each one's log into an outcome."""
    if h2load_version() is None:
        raise AxonError(h2load_runner.NO_H2LOAD)
    if check_body:
        h2load_runner.precheck(endpoints, payload, expected, spec.timeout_s)
    clients, streams, per_client = open_topology(spec.rate, spec.connections, spec.max_in_flight)
    tick = tick_s(per_client)
    info = {
        "name": "native",
        "tool": "h2load",
        "version": h2load_version(),
        "connections": clients,
        "processes": clients,
        "streams_per_connection": streams,
        "in_flight_limit": clients * streams,
        "threads": 1,
        "rate_per_connection": per_client,
        "fan_out": f"{clients} h2load process(es), one connection each, at {per_client:,.6g} req/s each (--rps is per connection)",
        "schedule": f"h2load --rps: due requests released every {tick * 1e3:g} ms; latency timed from the release tick",
    }
    if endpoints.tls:
        info["certificate_verified"] = False
    with tempfile.TemporaryDirectory(prefix="axon-h2load-open-") as tmp:
        frame = Path(tmp) / "request.bin"
        frame.write_bytes(grpc_frame(payload))
        logs = [Path(tmp) / f"requests-{i}.log" for i in range(clients)]
        pre = h2load_runner.scrape_before(scrape)
        launched = time.time()
        procs: list[subprocess.Popen] = []
        try:
            for i, log in enumerate(logs):
                # Stagger the clients' ticks over one tick, so their bursts interleave.
                lag = launched + i * tick / clients - time.time()
                if lag > 0:
                    time.sleep(lag)
                cmd = command(endpoints.grpc, frame, log, spec, per_client, streams, endpoints.tls, endpoints.headers)
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            scrapes = Scrapes(scrape, [p.pid for p in procs])
            window_start = launched + spec.warmup_s
            plan = h2load_runner.scrape_times(window_start, spec.duration_s, lead_s=tick)
            interrupted, stopped = False, None
            try:
                stopped = h2load_runner.follow(
                    procs, plan, scrapes, logs, window_start, spec.timeout_s, on_progress, endpoints, guard
                )
            except KeyboardInterrupt:
                interrupted = True
                for p in procs:
                    stop_h2load(p)
            outputs = h2load_runner.collect(procs, spec)
        finally:
            for p in procs:  # whatever happened above, no h2load outlives the run
                if p.poll() is None:
                    p.kill()
                    p.wait()
        rows = [h2load_runner.read_log(log) for log in logs]
    post, post_error = h2load_runner.scrape_after(scrape)
    metrics_error = scrapes.error or post_error
    server_down = h2load_runner.server_down(stopped, metrics_error, endpoints)
    cut_short = interrupted or stopped is not None
    schedules = [reconstruct(r, per_client, streams, version=info["version"]) for r in rows]
    info.update(tick_info(info["version"], schedules, per_client))
    every = np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)
    verification = h2load_runner.verify(
        every, every[:, 1] == h2load_runner.HTTP_OK, scrapes, pre, post, in_flight=clients * streams
    )
    summaries = [h2load_runner.parse_summary(out) for out, _ in outputs]
    outcomes = []
    for i, (sched, proc, (stdout, stderr)) in enumerate(zip(schedules, procs, outputs)):
        # A window cut short has no full schedule to hold the sends against.
        dropped = 0 if cut_short else not_sent(summaries[i], per_client, spec.duration_s, peak_in_flight(rows[i]), streams)
        outcomes.append(
            outcome(
                i,
                spec,
                sched,
                proc.returncode,
                stdout,
                stderr,
                scrapes,
                server_down,
                interrupted,
                cut_short,
                verification if i == 0 else {},
                dropped,
            )
        )
    extra: dict = {
        "verification": verification,
        "h2load_summary": summaries,
        "correctness_method": h2load_runner.CORRECTNESS_METHOD,
    }
    if metrics_error is not None and not server_down:
        extra["metrics_error"] = metrics_error
    ticks = [sched.tick if sched.tick_measured else None for sched in schedules if len(sched.start)]
    problem = tick_problem(info["version"], ticks)
    if problem:
        extra["verdicts"] = [problem]
    before, after = scrapes.window_metrics()
    return EngineRun(outcomes, before, after, interrupted, info, extra)


def outcome(
    index: int,
    spec: LoadSpec,
    sched: Schedule,
    returncode: int,
    stdout: str,
    stderr: str,
    scrapes: Scrapes,
    server_down: bool,
    interrupted: bool,
    cut_short: bool,
    verification: dict,
    dropped: int,
) -> WorkerOutcome:
    """One open-loop client's outcome from its schedule: latencies from the release tick, its lag, its CPU.

    ``verification``: the count check, whose Triton failures this outcome carries (the first
    client's; the rest get ``{}``); ``dropped``: its due requests never sent (:func:`not_sent`).
    """
    ok_mask = sched.status == h2load_runner.HTTP_OK
    failures = h2load_runner.http_failures(sched.status)
    longest = float((sched.end - sched.start).max()) if len(sched.start) else 0.0
    reasons = h2load_runner.incomplete_reasons(
        sched.start, returncode, stdout, stderr, spec.duration_s, cut_short, server_down, longest
    )
    n = len(sched.start)
    server_failures = verification.get("server_failures_in_window") or 0
    failures.update(h2load_runner.server_failure_classes(verification))
    if dropped:
        # As the python engine counts a due request it does not send: a failure of its own class.
        failures[CLIENT_OVERLOAD] = dropped
    cpu_s, cores = scrapes.cpu_between(index)
    return WorkerOutcome(
        index=index,
        latency=histogram_of(sched.latency[ok_mask]),
        lag=histogram_of(np.maximum(sched.lag, 0.0)),
        client_lag=histogram_of(sched.client_lag),
        uncorrected=histogram_of(sched.end[ok_mask] - sched.start[ok_mask]),
        server_held=int(sched.server_held.sum()),
        sent=n + dropped,
        ok=max(int(ok_mask.sum()) - server_failures, 0),
        failures=failures,
        checked=1 if index == 0 else 0,  # the pre-run check of the one body every request carries
        mismatches=0,
        measured_s=h2load_runner.measured_s(spec.duration_s, sched.start, sched.end, cut_short),
        client_cores=cores,  # one h2load thread per process
        client_cpu_s=cpu_s,
        # The requests this process completed between the scrapes, for its CPU per request.
        client_cpu_requests=scrapes.completed_between(sched.end, ok_mask),
        incomplete_reason="; ".join(dict.fromkeys(reasons)) or None,
        failure_details={},
        timeline=_timeline(spec, sched, ok_mask) if spec.timeline_s and n else None,
    )


def _timeline(spec: LoadSpec, sched: Schedule, ok_mask: np.ndarray) -> list[dict]:
    """Per-slice counts and corrected latencies, slices by due time from the first one."""
    due = np.minimum(sched.due, sched.start)
    last = max(math.ceil(spec.duration_s / spec.timeline_s) - 1, 0)
    index = np.clip(((due - due.min()) // spec.timeline_s).astype(np.int64), 0, last)
    latency = sched.latency
    slices = []
    for i in np.unique(index).tolist():
        mine = index == i
        slices.append(
            {
                "index": i,
                "ok": int(np.count_nonzero(mine & ok_mask)),
                "failed": int(np.count_nonzero(mine & ~ok_mask)),
                "latency": histogram_of(latency[mine & ok_mask]),
            }
        )
    return slices


class NativeOpenEngine(H2loadEngine):
    """h2load in open loop: arrivals at a constant rate, every latency timed from its release tick."""

    def offer(self, work: Workload, expected: dict[str, np.ndarray] | None) -> EngineRun:
        return run(
            work.spec, work.endpoints, work.payloads[0], expected, work.scrape, work.on_progress, self.check_body, work.guard
        )
