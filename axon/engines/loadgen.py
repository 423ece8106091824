"""The load generator's core: closed loop (N in flight) and open loop (arrivals at a rate).

One measurement path for both: a request's outcome goes to :meth:`Recorder.record`, which
counts it only if its send time (open loop: its *intended* send time) falls in the window.
The clock and the sender are parameters, so the scheduling is tested on virtual time against
a scripted server, and the same code drives real gRPC.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from axon.errors import AxonError
from axon.records import stats

OK = "OK"
TIMEOUT = "DEADLINE_EXCEEDED"
UNAVAILABLE = "UNAVAILABLE"
NOT_FOUND = "NOT_FOUND"  # Triton's answer for a model that is not loaded (unloaded mid-run, say)
CLIENT_OVERLOAD = "CLIENT_OVERLOAD"  # open loop: too many in flight, the request was not sent
# The python engine's bound on requests in flight per worker process, unless the spec sets one:
# an open loop against a stalled server would otherwise hold every due request (memory grows
# with rate x stall); past it a due request is not sent and counts as CLIENT_OVERLOAD.
PYTHON_MAX_IN_FLIGHT = 20_000
# Shed load: Triton's queue policy refused the request (its dynamic batcher's queue was full,
# or the request waited past the queue timeout). Triton says UNAVAILABLE for both, the code a
# dead server gives too; counted apart, so an overload study shows shed load, and a server
# rejecting under overload is never mistaken for a server gone.
REJECTED = "REJECTED"
REJECTION_MARKS = ("exceeds maximum queue size", "request timeout expired")

# A server that answers nothing but UNAVAILABLE (server gone) or NOT_FOUND (model gone) this
# many times in a row will not recover by itself: with on_unavailable="stop" the run stops early.
ABORT_AFTER_UNAVAILABLE = 50
GONE_CODES = {UNAVAILABLE: "server unavailable", NOT_FOUND: "model not served"}
ON_UNAVAILABLE = ("stop", "continue")
# on_unavailable="continue", closed loop: a worker whose request failed with a "gone" code waits
# this long before its next one, so an outage costs a bounded number of failed requests (about
# concurrency / backoff per second) instead of as many as the CPU can spin.
UNAVAILABLE_BACKOFF_S = 0.05
# Open loop: sending later than intended by more than this (p99) means the client fell behind.
MAX_SCHEDULE_LAG_S = 0.010
# A request sent more than this after its intended time counts as late in the record's
# schedule.late_fraction (perf_analyzer reports the same as its "delayed" share).
LATE_SEND_S = 0.001
# processes="auto": several worker processes only where there are cores to spare. Measured
# 2026-11-28 on 2 cores (client and server sharing them), c=64 with a start barrier: 1 process
# 4,872 req/s, 4 processes 3,657 req/s. So: 1 process on machines of up to
# AUTO_SINGLE_PROCESS_CORES cores; beyond, one per AUTO_CORES_PER_PROCESS cores, at most
# AUTO_MAX_PROCESSES (a heuristic not yet measured on a larger client machine).
AUTO_SINGLE_PROCESS_CORES = 4
AUTO_CORES_PER_PROCESS = 4
AUTO_MAX_PROCESSES = 4
PROGRESS_INTERVAL_S = 0.5


def shed_by_queue(code: str, detail: str) -> bool:
    """Whether a failure is Triton's queue policy shedding the request (full queue, or queued
    past its timeout): UNAVAILABLE, the code a dead server gives, told apart by its message."""
    return code == UNAVAILABLE and any(mark in detail.lower() for mark in REJECTION_MARKS)


class Outcome(NamedTuple):
    code: str  # "OK" or a gRPC status code name
    response: bytes | None = None
    detail: str | None = None  # the server's message for a failure


Send = Callable[[int], Awaitable[Outcome]]
Clock = Callable[[], float]
Checker = Callable[[int, bytes], bool]  # (payload index, response) -> matches the reference


@dataclass(frozen=True)
class LoadSpec:
    """What load to offer. Exactly one of ``concurrency`` (closed) and ``rate`` (open)."""

    model: str
    concurrency: int | None = None
    rate: float | None = None
    distribution: str = "constant"
    duration_s: float = 30.0
    warmup_s: float = 5.0
    requests: int | None = None  # closed loop: stop after this many measured requests instead
    rows_per_request: int = 1
    timeout_s: float = 10.0
    sample_every: int = 100  # correctness: check 1 response in this many
    processes: int | str = 1  # or "auto"
    seed: int = 0
    max_error_rate: float = 0.0
    max_in_flight: int | None = None  # open loop: the most requests in flight in all; None: the engine's own bound
    engine: str = "auto"  # auto | native | python (see axon.engines)
    connections: int | None = (
        None  # native engine: spread the streams (closed) or the rate (open loop) over this many connections
    )
    on_unavailable: str = "stop"  # stop: a server (or model) gone ends the run; continue: keep offering load
    timeline_s: float | None = None  # also record counts and latencies per slice of this many seconds

    @property
    def mode(self) -> str:
        return "closed" if self.concurrency is not None else "open"

    def in_flight_per_process(self) -> int:
        """The python engine's bound for one worker process: the spec's total shared out, or the engine's default."""
        if self.max_in_flight is None:
            return PYTHON_MAX_IN_FLIGHT
        processes = self.processes if isinstance(self.processes, int) else 1
        return max(1, self.max_in_flight // processes)

    def resolved(self, cores: int | None = None) -> LoadSpec:
        """This spec with ``processes="auto"`` replaced by a number for a machine of ``cores``."""
        if self.processes != "auto":
            return self
        cores = cores or os.cpu_count() or 1
        n = 1 if cores <= AUTO_SINGLE_PROCESS_CORES else min(AUTO_MAX_PROCESSES, cores // AUTO_CORES_PER_PROCESS)
        if self.concurrency is not None:
            n = min(n, self.concurrency)
        return replace(self, processes=max(1, n))

    def validate(self) -> LoadSpec:
        if (self.concurrency is None) == (self.rate is None):
            raise AxonError("give exactly one of concurrency (closed loop) or rate (open loop)")
        if self.concurrency is not None and not 1 <= self.concurrency <= 1024:
            raise AxonError(f"concurrency must be between 1 and 1024, got {self.concurrency}")
        if self.rate is not None and not self.rate > 0:
            raise AxonError(f"rate must be > 0 requests/s, got {self.rate}")
        if not self.duration_s > 0:
            raise AxonError(f"duration must be > 0 s, got {self.duration_s}")
        if self.warmup_s < 0:
            raise AxonError(f"warmup must be >= 0 s, got {self.warmup_s}")
        if self.requests is not None and (self.requests <= 0 or self.mode != "closed"):
            raise AxonError("a request count must be > 0 and goes with closed-loop concurrency")
        if self.rows_per_request < 1 or self.timeout_s <= 0:
            raise AxonError("rows per request and timeout must be positive")
        if self.on_unavailable not in ON_UNAVAILABLE:
            raise AxonError(f"on_unavailable must be one of {', '.join(ON_UNAVAILABLE)}, got {self.on_unavailable!r}")
        if self.timeline_s is not None and not self.timeline_s > 0:
            raise AxonError(f"a timeline slice must be > 0 s, got {self.timeline_s}")
        if self.connections is not None and self.connections < 1:
            raise AxonError("connections must be >= 1")
        if self.max_in_flight is not None:
            if self.mode != "open":
                raise AxonError(
                    "an in-flight bound goes with an open-loop rate: closed loop keeps exactly its concurrency in flight"
                )
            if self.max_in_flight < 1:
                raise AxonError(f"the in-flight bound must be >= 1, got {self.max_in_flight}")
        if self.processes == "auto":
            return self
        if not isinstance(self.processes, int) or self.processes < 1:
            raise AxonError(f"processes must be a whole number >= 1 or 'auto', got {self.processes!r}")
        if self.concurrency is not None and self.processes > self.concurrency:
            raise AxonError(f"{self.processes} processes need concurrency >= {self.processes}")
        if self.max_in_flight is not None and self.max_in_flight < self.processes:
            raise AxonError(f"an in-flight bound of {self.max_in_flight} cannot be shared by {self.processes} processes")
        return self


@dataclass
class Recorder:
    """Everything one worker measured inside the window."""

    window_start: float
    window_end: float
    checker: Checker | None = None
    sample_every: int = 100
    latency: object = field(default_factory=stats.new_histogram)
    # Requests Triton's queue policy rejected, timed alike: kept apart, so ``latency`` holds
    # answered requests only (as the native engine's does) and shed load's answer time stays readable.
    rejected_latency: object = field(default_factory=stats.new_histogram)
    lag: object = field(default_factory=stats.new_histogram)
    sent: int = 0
    ok: int = 0
    failures: Counter = field(default_factory=Counter)
    checked: int = 0
    mismatches: int = 0
    consecutive_unavailable: int = 0
    gone_code: str | None = None  # the "gone" code of the current streak of consecutive failures
    outages: int = 0  # streaks that reached ABORT_AFTER_UNAVAILABLE (with "continue", each is an outage ridden out)
    stop_when_gone: bool = True  # on_unavailable="stop"
    details: dict = field(default_factory=dict)  # failure code -> the server's first message for it
    timeline_s: float | None = None
    slices: dict = field(default_factory=dict)  # slice index -> Slice (only with timeline_s)

    def in_window(self, t: float) -> bool:
        return self.window_start <= t < self.window_end

    def _slice(self, start: float) -> Slice | None:
        if self.timeline_s is None:
            return None
        index = int((start - self.window_start) // self.timeline_s)
        if index not in self.slices:
            self.slices[index] = Slice()
        return self.slices[index]

    def record(
        self, index: int, start: float, done: float, outcome: Outcome, lag: float | None = None, started: float | None = None
    ) -> None:
        """Record one finished request.

        ``start`` decides the window (the send time, or the intended time in open loop); latency
        runs from ``started`` if given, else from ``start``.
        """
        if shed_by_queue(outcome.code, outcome.detail or ""):
            outcome = outcome._replace(code=REJECTED)
        if outcome.code in GONE_CODES:
            same = outcome.code == self.gone_code
            self.consecutive_unavailable = self.consecutive_unavailable + 1 if same else 1
            self.gone_code = outcome.code
            if self.consecutive_unavailable == ABORT_AFTER_UNAVAILABLE:
                self.outages += 1
        else:
            self.consecutive_unavailable, self.gone_code = 0, None
        if outcome.code != OK and outcome.detail and outcome.code not in self.details:
            self.details[outcome.code] = outcome.detail
        if not self.in_window(start):
            return
        self.sent += 1
        piece = self._slice(start)
        if lag is not None:
            stats.record_seconds(self.lag, max(lag, 0.0))
        if outcome.code != OK:
            self.failures[outcome.code] += 1
            if outcome.code == REJECTED:
                stats.record_seconds(self.rejected_latency, done - (start if started is None else started))
            if piece is not None:
                piece.failed += 1
            return
        self.ok += 1
        seconds = done - (start if started is None else started)
        stats.record_seconds(self.latency, seconds)
        if piece is not None:
            piece.ok += 1
            stats.record_seconds(piece.latency, seconds)
        if self.checker is not None and self.ok % self.sample_every == 1 % self.sample_every:
            self.checked += 1
            if not self.checker(index, outcome.response):
                self.mismatches += 1

    @property
    def gone(self) -> bool:
        """The server (or the model) answered only "gone" codes for a while: it won't come back by itself."""
        return self.consecutive_unavailable >= ABORT_AFTER_UNAVAILABLE

    @property
    def server_gone(self) -> bool:
        """Time to stop: gone, and the load was asked to stop when that happens."""
        return self.stop_when_gone and self.gone

    @property
    def gone_reason(self) -> str | None:
        """Why the run stopped early ("server unavailable", or "model not served: <server's message>")."""
        if not self.server_gone:
            return None
        reason = GONE_CODES[self.gone_code]
        detail = self.details.get(self.gone_code)
        return f"{reason}: {detail}" if detail and self.gone_code != UNAVAILABLE else reason

    def encoded_timeline(self) -> list[dict]:
        """The slices as plain data (picklable, JSON-able): index, ok, failed, encoded histogram."""
        return [
            {"index": i, "ok": s.ok, "failed": s.failed, "latency": stats.encode(s.latency)}
            for i, s in sorted(self.slices.items())
        ]


@dataclass
class Slice:
    """What one slice of the window measured (see ``LoadSpec.timeline_s``)."""

    ok: int = 0
    failed: int = 0
    latency: object = field(default_factory=stats.new_histogram)


def backoff_after(outcome: Outcome, recorder: Recorder) -> float:
    """Seconds a closed-loop worker waits before its next request (only while a server is gone and the run continues)."""
    if recorder.stop_when_gone or outcome.code not in GONE_CODES:
        return 0.0
    return UNAVAILABLE_BACKOFF_S


async def closed_loop(
    send: Send,
    n_payloads: int,
    concurrency: int,
    recorder: Recorder,
    clock: Clock,
    stop: asyncio.Event,
    request_limit: int | None = None,
    first_index: int = 0,
) -> None:
    """``concurrency`` workers, each sending its next request as soon as the last one returns."""

    async def worker(w: int) -> None:
        i = first_index + w
        while not stop.is_set():
            start = clock()
            if start >= recorder.window_end:
                return
            outcome = await send(i % n_payloads)
            recorder.record(i % n_payloads, start, clock(), outcome)
            if recorder.server_gone or (request_limit is not None and recorder.sent >= request_limit):
                stop.set()
            i += concurrency
            pause = backoff_after(outcome, recorder)
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))


async def open_loop(
    send: Send,
    n_payloads: int,
    offsets: Sequence[float],
    recorder: Recorder,
    clock: Clock,
    stop: asyncio.Event,
    t0: float,
    max_in_flight: int = PYTHON_MAX_IN_FLIGHT,
) -> None:
    """Send request k at ``t0 + offsets[k]`` whatever the responses do; time it from then."""
    in_flight: set[asyncio.Task] = set()

    async def one(k: int, intended: float, sent_at: float) -> None:
        outcome = await send(k % n_payloads)
        # Timed from the intended send time when late (no coordinated omission), from the real
        # one when a coarse timer (uvloop's are 1 ms) woke the sender early.
        recorder.record(k % n_payloads, intended, clock(), outcome, lag=sent_at - intended, started=min(intended, sent_at))
        if recorder.server_gone:
            stop.set()

    for k, offset in enumerate(offsets):
        intended = t0 + offset
        delay = intended - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop.is_set():
            break
        if len(in_flight) >= max_in_flight:
            recorder.record(k % n_payloads, intended, clock(), Outcome(CLIENT_OVERLOAD))
            continue
        task = asyncio.ensure_future(one(k, intended, clock()))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)


def make_checker(expected: list[dict[str, np.ndarray]]) -> Checker:
    """A checker comparing every output of a response with the locally computed reference answer."""
    from axon.workload.requests import decode, matches

    def check(index: int, response: bytes | None) -> bool:
        if response is None:
            return False
        return matches(decode(response), expected[index])

    return check


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def window_bounds(t0: float, warmup_s: float, duration_s: float, request_limit: int | None) -> tuple[float, float]:
    end = math.inf if request_limit is not None else t0 + warmup_s + duration_s
    return t0 + warmup_s, end
