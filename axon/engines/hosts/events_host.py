"""A trigger path's events from one host (the event engine in a process of its own, released at T), and their merge.

The Dask task never times an event. It spawns one process, which imports the stack and says
ready; the task then says ready to the coordinator, waits for the common start T, and hands the
process T's local equivalent; the process runs :func:`axon.engines.events.run` on this host's
share (closed loop: its events in flight; open loop: its rate) from that instant and sends back
what the engine measured. Triton's per-model counters are the coordinator's to read, before the
first event of any host and after the last; :func:`merged_calls` and :func:`summed_totals` add
the hosts' per-call and per-model counts up for the one check.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from dataclasses import dataclass

from axon.engines.hosts import clock
from axon.errors import AxonError
from axon.records import stats
from axon.records.schema import add_counts

READY_TIMEOUT_S = 120.0  # a spawned process imports grpc and numpy before it is ready
POLL_S = 0.1


@dataclass(frozen=True)
class PathLoad:
    """What every host sends: each step's planned calls (bodies and answers) and the CPU spent before it."""

    steps: list  # list[list[axon.engines.events.PlannedCall]]
    client_ms: list[float]
    cycle_s: float | None = None  # closed loop: each client starts an event this often (None: at once)


def _process_main(conn, load: PathLoad, share, url: str, tls: bool, headers: dict) -> None:
    """The spawned process: ready, then the start instant, then the events; progress and the result over ``conn``."""
    from axon.engines import events
    from axon.serving.endpoints import Endpoints
    from axon.serving.process import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's; "stop" comes over conn
    die_with_parent()
    try:
        conn.send({"kind": "ready"})
        order = conn.recv()
        if "abort" in order:
            return
        stopped: list[str] = []

        def guard() -> str | None:
            if not stopped and conn.poll() and conn.recv().get("kind") == "stop":
                stopped.append("interrupted")
            return stopped[0] if stopped else None

        def on_progress(_elapsed: float, sent: int, p99_ms: float) -> None:
            conn.send({"kind": "progress", "sent": int(sent), "p99_ms": float(p99_ms)})

        run = events.run(
            load.steps,
            load.client_ms,
            share,
            Endpoints(url, tls=tls, headers=headers),
            guard=guard,
            on_progress=on_progress,
            cycle_s=load.cycle_s,
            start_at=order["start"],
        )
        conn.send(
            {
                "kind": "result",
                "outcomes": run.outcomes,
                "calls": run.extra.get("path_calls", {}),
                "totals": run.extra.get("path_totals", {}),
                "events_run_ok": run.extra.get("events_run_ok", 0),
            }
        )
    except BaseException as exc:  # said to the task, never a hang
        conn.send({"kind": "result", "error": f"{type(exc).__name__}: {exc}"})


def run_on_host(job, load: PathLoad, offset: clock.Offset, ready, wait_start, stopping, report) -> dict:
    """This host's share of the events: ``ready()`` once the process is, ``wait_start()`` -> the order
    (``{"start": T}`` or ``{"abort": why}``), ``stopping()`` polled, ``report(event)`` for progress."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    share = job.share.resolved()
    process = ctx.Process(target=_process_main, args=(there, load, share, job.url, job.tls, dict(job.headers)), daemon=True)
    process.start()
    try:
        if not here.poll(READY_TIMEOUT_S):
            raise AxonError(f"the event engine's process was not ready within {READY_TIMEOUT_S:.0f} s")
        here.recv()
        ready()
        order = wait_start()
        if "abort" in order:
            here.send(order)
            return {"error": f"aborted before the start: {order['abort']}"}
        start_local = clock.local_start(order["start"], offset, job.correct_clock)
        late_s = max(time.time() + job.clock_skew_s - start_local, 0.0)
        # The process reads this machine's real clock; the test-only skew is this host's clock error.
        here.send({"start": start_local - job.clock_skew_s})
        announced = False
        while True:
            if not here.poll(POLL_S):
                if not process.is_alive():
                    return {"error": f"the event engine's process died (exit {process.exitcode})"}
                continue
            message = here.recv()
            if message["kind"] == "progress":  # every PROGRESS_INTERVAL_S of the window
                if message["sent"] > 0 and not announced:
                    report({"kind": "window"})  # events are counted only inside the window: it is open
                    announced = True
                report({"kind": "progress", "sent": message["sent"], "p99_ms": message["p99_ms"]})
                if stopping():
                    here.send({"kind": "stop"})
            elif message["kind"] == "result":
                break
        if "error" in message:
            return {"error": message["error"]}
        for o in message["outcomes"]:
            if "window_start_wall" in o:
                o["window_start_scheduler"] = clock.on_scheduler_clock(o["window_start_wall"] + job.clock_skew_s, offset)
        return {
            **message,
            "start_local": start_local,
            "late_s": late_s,
            "processes": 1,
            "concurrency": share.concurrency,
            "rate": share.rate,
        }
    finally:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


def merged_calls(per_host: list[dict]) -> dict:
    """Each call's counts summed over hosts, and its latency histogram their exact sum."""
    merged = {}
    for key in sorted({k for calls in per_host for k in calls}):
        mine = [calls[key] for calls in per_host if key in calls]
        merged[key] = {
            "sent": sum(c["sent"] for c in mine),
            "ok": sum(c["ok"] for c in mine),
            "failures": add_counts(c["failures"] for c in mine),
            "latency": stats.encode(stats.merge([c["latency"] for c in mine])),
        }
    return merged


def summed_totals(per_host: list[dict]) -> dict:
    """Each model's calls sent and answered over the whole run, summed over hosts."""
    totals: dict[str, dict] = {}
    for host in per_host:
        for model, counts in host.items():
            entry = totals.setdefault(model, {})
            for k, v in counts.items():
                entry[k] = entry.get(k, 0) + v
    return totals
