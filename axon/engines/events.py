"""The event engine: a trigger path's events on one shared server, each a chain of steps of concurrent calls.

Why its own engine: a step waits for the one before it, so the calls of an event are not
independent requests at fixed rates (h2load's model); the event's latency, from its start
(open loop: its *intended* start) to its last step's last answer, is the number that matters.

One process, one grpc.aio channel, requests pre-serialised per model (the python engine's
discipline: the timed loop only moves bytes). ``client_ms`` is spent busy on this process's
CPU before its step, as a trigger would spend it, so a hot client shows as client CPU and is
flagged client-bound like any other run. Every call (warm-up and window alike) is counted
per model, so the totals can be held against Triton's own counters once the load has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

from axon.engines import EngineRun, WorkerOutcome
from axon.engines.cpu import own_cpu_s
from axon.engines.loadgen import MAX_SCHEDULE_LAG_S, OK, LoadSpec, make_checker
from axon.engines.python import GrpcSender
from axon.engines.schedule import arrival_offsets
from axon.records import stats

PROGRESS_INTERVAL_S = 0.5
ENGINE_INFO = {
    "name": "events",
    "tool": "grpc.aio (event-aware: steps in order, calls of a step concurrent)",
    "why": "a path's steps depend on each other: h2load's independent fixed-rate requests cannot keep that order",
}


@dataclass
class PlannedCall:
    """One call of a step: its model and the bodies it cycles through (with their reference answers)."""

    model: str
    payloads: list[bytes]
    expected: list | None


@dataclass
class CallStats:
    latency: object = field(default_factory=stats.new_histogram)
    sent: int = 0
    ok: int = 0
    failures: Counter = field(default_factory=Counter)


def _busy(ms: float) -> None:
    """Spend ``ms`` of this process's CPU, as a trigger's own work would (never a sleep)."""
    if ms <= 0:
        return
    until = time.perf_counter() + ms / 1e3
    while time.perf_counter() < until:
        pass


async def _run(
    steps: list[list[PlannedCall]],
    client_ms: list[float],
    spec: LoadSpec,
    endpoints,
    guard,
    on_progress,
    cycle_s: float | None,
    start_at: float | None = None,
) -> dict:
    clock = time.perf_counter
    # One sender per distinct call (its own payload pool), all on one channel.
    channel_sender = GrpcSender(
        endpoints.grpc, [], spec.timeout_s, endpoints.tls, dict(endpoints.headers), getattr(endpoints, "ca_file", None)
    )
    call_of = {}
    for s, step in enumerate(steps):
        for c, call in enumerate(step):
            call_of[(s, c)] = (
                channel_sender.with_payloads(call.payloads),
                make_checker(call.expected) if call.expected else None,
            )
    per_call = {key: CallStats() for key in call_of}
    totals: dict[str, Counter] = {}  # per model, the whole run: sent and OK calls (for Triton's counters)
    event_latency, lag = stats.new_histogram(), stats.new_histogram()
    events = {"ok": 0, "in_window": 0, "run_ok": 0}  # run_ok: every event of the run (warm-up too) that got all its answers
    event_failures: Counter = Counter()
    checked = mismatches = 0
    stop = asyncio.Event()
    if start_at is not None:  # many hosts: every host's events start at one instant (this machine's clock)
        await asyncio.sleep(max(start_at - time.time(), 0.0))
    t0 = clock()
    window_start_wall = time.time() + spec.warmup_s
    window_start, window_end = t0 + spec.warmup_s, t0 + spec.warmup_s + spec.duration_s
    cpu: dict[str, float] = {}
    reason: list[str] = []
    counter = [0]

    async def one_event(intended: float) -> None:
        nonlocal checked, mismatches
        started = clock()
        measured = window_start <= intended < window_end
        k = counter[0]
        counter[0] += 1
        failed = None
        for s, step in enumerate(steps):
            _busy(client_ms[s])
            calls = []
            for c in range(len(step)):
                sender, _ = call_of[(s, c)]
                calls.append(sender(k % len(step[c].payloads)))
            sent_at = clock()
            outcomes = await asyncio.gather(*calls)
            for c, outcome in enumerate(outcomes):
                model = step[c].model
                tally = totals.setdefault(model, Counter())
                tally["sent"] += 1
                tally["ok"] += outcome.code == OK
                if measured:
                    st = per_call[(s, c)]
                    st.sent += 1
                    if outcome.code == OK:
                        st.ok += 1
                        stats.record_seconds(st.latency, clock() - sent_at)
                        _, checker = call_of[(s, c)]
                        if checker is not None and k % spec.sample_every == 0:
                            checked += 1
                            mismatches += not checker(k % len(step[c].payloads), outcome.response)
                    else:
                        st.failures[outcome.code] += 1
                if outcome.code != OK and failed is None:
                    failed = outcome.code
            if failed is not None:
                break  # a trigger can't go on without the step's answers
        events["run_ok"] += failed is None
        if measured:
            events["in_window"] += 1
            if failed is None:
                events["ok"] += 1
                stats.record_seconds(event_latency, clock() - intended)
            else:
                event_failures[failed] += 1
            if spec.mode == "open":
                stats.record_seconds(lag, max(started - intended, 0.0))

    async def monitor() -> None:
        while not stop.is_set():
            now = clock()
            if "start" not in cpu and now >= window_start:
                cpu.update(start=own_cpu_s(), start_wall=now)
            why = guard() if guard is not None else None
            if why:
                reason.append(why)
                stop.set()
                return
            if on_progress is not None and now >= window_start:
                on_progress(
                    now - window_start,
                    events["in_window"],
                    event_latency.get_value_at_percentile(99) / 1e3 if events["ok"] else 0.0,
                )
            if now >= window_end:
                return
            next_edge = window_start if "start" not in cpu else window_end
            await asyncio.sleep(min(PROGRESS_INTERVAL_S, max(next_edge - now, 0.001)))

    async def closed_worker(index: int) -> None:
        if cycle_s is None:
            while not stop.is_set() and clock() < window_end:
                await one_event(clock())
            return
        # Paced: a simulated trigger client starts an event every cycle_s (its think time is
        # the cycle less the event's latency), staggered so the clients don't start in step.
        # A late client starts at once and does not catch up in a burst, as a real one can't.
        next_start = t0 + cycle_s * index / spec.concurrency
        while not stop.is_set():
            delay = next_start - clock()
            if delay > 0:
                await asyncio.sleep(min(delay, PROGRESS_INTERVAL_S))
                continue
            if clock() >= window_end:
                return
            await one_event(clock())
            next_start = max(next_start + cycle_s, clock())

    async def open_loop() -> None:
        offsets = arrival_offsets(spec.rate, spec.warmup_s + spec.duration_s, spec.distribution, spec.seed)
        running: set = set()
        for offset in offsets:
            intended = t0 + offset
            delay = intended - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if stop.is_set():
                break
            task = asyncio.ensure_future(one_event(intended))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)

    monitor_task = asyncio.ensure_future(monitor())
    try:
        if spec.mode == "closed":
            await asyncio.gather(*(closed_worker(i) for i in range(spec.concurrency)))
        else:
            await open_loop()
        cpu.update(end=own_cpu_s(), end_wall=clock())
    finally:
        stop.set()
        monitor_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor_task
        await channel_sender.close()
    end_wall = cpu.get("end_wall", clock())
    measured_s = max(min(end_wall, window_end) - window_start, 1e-9)
    cpu_s = cpu["end"] - cpu["start"] if "start" in cpu and "end" in cpu else float("nan")
    return {
        "outcome": WorkerOutcome(
            index=0,
            latency=stats.encode(event_latency),
            lag=stats.encode(lag) if spec.mode == "open" else "",
            sent=events["in_window"],
            ok=events["ok"],
            failures=dict(event_failures),
            checked=checked,
            mismatches=mismatches,
            measured_s=measured_s,
            client_cores=cpu_s / max(end_wall - cpu.get("start_wall", end_wall), 1e-9) if "start" in cpu else float("nan"),
            client_cpu_s=cpu_s,
            client_cpu_requests=events["in_window"],
            incomplete_reason=reason[0] if reason else None,
            window_start_wall=window_start_wall,
        ),
        "calls": {
            key: {"sent": st.sent, "ok": st.ok, "failures": dict(st.failures), "latency": stats.encode(st.latency)}
            for key, st in per_call.items()
        },
        "totals": {model: dict(c) for model, c in totals.items()},
        "events_run_ok": events["run_ok"],
    }


def run(
    steps: list[list[PlannedCall]],
    client_ms: list[float],
    spec: LoadSpec,
    endpoints,
    scrape_models=None,
    guard=None,
    on_progress=None,
    cycle_s: float | None = None,
    start_at: float | None = None,
) -> EngineRun:
    """Offer the path's events; ``scrape_models()`` reads Triton's per-model counters (before and after the load).

    ``cycle_s`` (closed loop only): each of the ``concurrency`` clients starts an event every
    ``cycle_s`` seconds, thinking between (``axon size --verify``'s simulated trigger clients).
    ``start_at``: a ``time.time()`` instant to start at (many hosts), else now.
    """
    before = scrape_models() if scrape_models else None
    loop = asyncio.new_event_loop()
    interrupted = False
    try:
        result = loop.run_until_complete(_run(steps, client_ms, spec, endpoints, guard, on_progress, cycle_s, start_at))
    except KeyboardInterrupt:
        interrupted = True
        result = None
    finally:
        loop.close()
    after = scrape_models() if scrape_models and result is not None else None
    if result is None:
        empty = WorkerOutcome(
            index=0,
            latency=stats.encode(stats.new_histogram()),
            lag="",
            sent=0,
            ok=0,
            failures={},
            checked=0,
            mismatches=0,
            measured_s=float("nan"),
            client_cores=float("nan"),
            incomplete_reason="interrupted",
        )
        return EngineRun([empty], None, None, True, {"name": "events", "tool": "grpc.aio"}, {})
    info = {**ENGINE_INFO, "processes": 1}
    return EngineRun(
        [result["outcome"]],
        None,
        None,
        interrupted,
        info,
        {
            "path_calls": result["calls"],
            "path_totals": result["totals"],
            "scrapes": (before, after),
            "events_run_ok": result["events_run_ok"],
            "max_schedule_lag_s": MAX_SCHEDULE_LAG_S,
        },
    )
