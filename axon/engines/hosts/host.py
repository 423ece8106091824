"""What runs on one host: a pinned Dask task driving axon's python-engine workers, or h2load.

The task never times a request itself. It measures its clock's offset from the scheduler,
wakes the target (``RepositoryIndex``), starts its share of the load in spawned worker
processes (each opens its gRPC channel and holds it for the run), reports ready, waits for
the common start time T (scheduler clock), and releases its workers at its own clock's
equivalent of T. While they run it sends progress, and a "window" event once requests are
being measured; then it returns its workers' outcomes, each with its window start on the
scheduler's clock. On the native engine the same steps drive h2load instead
(:mod:`axon.engines.hosts.h2load`): its command lines are built before ready, and it is
launched at the local equivalent of T.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import socket
import time
from dataclasses import dataclass, replace

from axon.engines import python
from axon.engines.base import H2LOAD_INSTALL_HINT, h2load_version
from axon.engines.hosts import clock
from axon.engines.loadgen import PROGRESS_INTERVAL_S, LoadSpec
from axon.errors import AxonError

START_WAIT_S = python.READY_TIMEOUT_S * 2  # the coordinator waits for every host's workers
POLL_S = 0.1
DAEMON_HINT = "start Dask workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (config distributed.worker.daemon: False)"


@dataclass(frozen=True)
class RunNames:
    """Names of one run's Dask queue and variables, shared by coordinator and hosts."""

    run_id: str

    @property
    def events(self) -> str:  # Queue: host -> coordinator (started, ready, window, progress)
        return f"{self.run_id}-events"

    @property
    def start(self) -> str:  # Variable: coordinator -> hosts ({"start": T} or {"abort": why})
        return f"{self.run_id}-start"

    @property
    def stop(self) -> str:  # Event: coordinator -> hosts (Ctrl-C on the coordinator)
        return f"{self.run_id}-stop"

    def claim(self, host: int) -> str:  # Event: set by a host's first (and only) attempt
        return f"{self.run_id}-claim-{host}"


@dataclass(frozen=True)
class HostLoad:
    """What every host sends: scattered to each host once, not once per process or request."""

    payloads: list
    expected: list | None


@dataclass(frozen=True)
class HostJob:
    index: int
    names: RunNames
    share: LoadSpec  # this host's concurrency or rate; processes may be "auto" (this host's cores)
    url: str
    tls: bool
    headers: dict
    correct_clock: bool = True  # False only in tests: start at T as if the clocks agreed
    clock_skew_s: float = 0.0  # test only: this host's clock reads this much ahead of the real one
    engine: str = "python"  # or "native": h2load for this host's share; or "events": a trigger path's events


def probe() -> dict:
    """Run on each worker before a run: can it host load processes, and which axon is it?"""
    import axon

    return {
        "axon": axon.__version__,
        "axon_path": os.path.dirname(axon.__file__),
        "daemon": mp.current_process().daemon,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cores": os.cpu_count(),
        # This worker's h2load (its own PATH), or None: --engine native is refused before any load.
        "h2load": h2load_version(),
    }


def _wake(job: HostJob) -> None:
    """One RepositoryIndex call: wakes a scale-from-zero deployment and proves this host reaches it."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        with grpcclient.InferenceServerClient(job.url, ssl=job.tls) as client:
            client.get_model_repository_index(headers=job.headers or None, client_timeout=job.share.timeout_s)
    except InferenceServerException as exc:
        raise AxonError(f"RepositoryIndex at {job.url} failed: {str(exc).splitlines()[0]}") from None


def host_main(job: HostJob, load: HostLoad) -> dict:
    """The Dask task for one host; returns its outcomes (or ``{"error": ...}``), never raises for user errors."""
    from distributed import Event, Queue, Variable, get_client, get_worker

    client = get_client()
    worker = get_worker()
    names = job.names
    events = Queue(names.events, client=client)
    base = {"host": job.index, "address": worker.address, "hostname": socket.gethostname()}
    # A task is never rerun: with allowed-failures above 0 the scheduler could retry it on a
    # restarted worker, so the first attempt claims the host and any later one refuses.
    claim = Event(names.claim(job.index), client=client)
    if claim.is_set():
        return {**base, "error": "refused to rerun: this host's task already started once"}
    claim.set()
    events.put({"kind": "started", "host": job.index})
    if job.engine == "native":
        return _native_main(job, load, client, worker, events, base)
    if job.engine == "events":
        return _events_main(job, load, client, worker, events, base)
    if mp.current_process().daemon:
        return {**base, "error": f"this Dask worker is a daemon process and cannot start load processes; {DAEMON_HINT}"}

    def local() -> float:
        return time.time() + job.clock_skew_s

    offset = clock.measure_offset(local, lambda: client.run_on_scheduler(time.time))
    share = job.share.resolved()  # "auto" processes: this host's cores
    pool = None
    try:
        _wake(job)
        share.validate()
        jobs = [
            python.WorkerJob(i, s, job.url, job.tls, dict(job.headers), load.payloads, load.expected, connect_first=True)
            for i, s in enumerate(python.worker_shares(share))
        ]
        pool = python.WorkerPool(jobs, spawn=True)
        pool.launch()
        pool.wait_ready()
    except AxonError as exc:
        if pool is not None:
            pool.stop()
            pool.results(timeout_s=5)
        events.put({"kind": "failed", "host": job.index, "error": str(exc)})
        return {**base, "error": str(exc)}
    events.put({"kind": "ready", "host": job.index, "offset": offset.as_dict(), "processes": len(jobs)})
    try:
        order = Variable(names.start, client=client).get(timeout=START_WAIT_S)
    except TimeoutError:
        order = {"abort": f"no start time within {START_WAIT_S:.0f} s"}
    if "abort" in order:
        pool.stop()
        pool.results(timeout_s=5)
        return {**base, "error": f"aborted before the start: {order['abort']}"}
    start_local = clock.local_start(order["start"], offset, job.correct_clock)
    late_s = max(local() - start_local, 0.0)  # learnt T after its local equivalent had passed
    # The workers read this machine's time.time(); the test-only skew is this host's clock error.
    pool.release(start_local - job.clock_skew_s)
    _follow(pool, events, Event(names.stop, client=client), job.index)
    outcomes = pool.results(timeout_s=share.timeout_s + 10)
    for o in outcomes:
        if "window_start_wall" in o:
            o["window_start_scheduler"] = clock.on_scheduler_clock(o["window_start_wall"] + job.clock_skew_s, offset)
    return {
        **base,
        "offset": offset.as_dict(),
        "scheduler_delay_s": worker.scheduler_delay,  # Dask's own heartbeat estimate, for comparison
        "clock_corrected": job.correct_clock,
        "start_local": start_local,
        "late_s": late_s,
        "processes": len(jobs),
        "concurrency": share.concurrency,
        "rate": share.rate,
        "engine_version": python.version(),
        "outcomes": outcomes,
    }


def _native_main(job: HostJob, load: HostLoad, client, worker, events, base: dict) -> dict:
    """The native engine's host: h2load for this host's share, launched at the local equivalent of T."""
    from distributed import Event, Variable

    from axon.engines.hosts import h2load

    def local() -> float:
        return time.time() + job.clock_skew_s

    def failed(why: str) -> dict:
        events.put({"kind": "failed", "host": job.index, "error": why})
        return {**base, "error": why}

    offset = clock.measure_offset(local, lambda: client.run_on_scheduler(time.time))
    version = h2load_version()
    if version is None:  # the coordinator's probe catches this first; a worker's PATH may still change
        return failed(f"h2load not found on this host ({H2LOAD_INSTALL_HINT})")
    share = job.share.resolved()
    try:
        _wake(job)
        share.validate()
        plan = h2load.prepare(share, job.url, job.tls, dict(job.headers), load.payloads[0])
    except AxonError as exc:
        return failed(str(exc))
    try:
        events.put({"kind": "ready", "host": job.index, "offset": offset.as_dict(), "processes": len(plan.commands)})
        try:
            order = Variable(job.names.start, client=client).get(timeout=START_WAIT_S)
        except TimeoutError:
            order = {"abort": f"no start time within {START_WAIT_S:.0f} s"}
        if "abort" in order:
            return {**base, "error": f"aborted before the start: {order['abort']}"}
        start_local = clock.local_start(order["start"], offset, job.correct_clock)
        late_s = max(local() - start_local, 0.0)
        # h2load reads this machine's real clock; the test-only skew is this host's clock error.
        h2load.launch(plan, start_local - job.clock_skew_s)
        on_progress = _native_progress(events, Event(job.names.stop, client=client), job.index)
        scrapes, stopped, interrupted = h2load.follow(plan, job.url, job.tls, dict(job.headers), on_progress)
        outcomes, completions, summaries = h2load.finish(
            plan, scrapes, stopped, interrupted, lambda t: clock.on_scheduler_clock(t + job.clock_skew_s, offset)
        )
    finally:
        plan.kill()
    return {
        **base,
        "offset": offset.as_dict(),
        "scheduler_delay_s": worker.scheduler_delay,
        "clock_corrected": job.correct_clock,
        "start_local": start_local,
        "late_s": late_s,
        "engine": "native",
        "engine_version": version,
        "processes": len(plan.commands),
        "connections": plan.connections,
        "streams_per_connection": plan.streams,
        "threads": plan.threads,
        "rate_per_connection": plan.rate_per_connection,
        "concurrency": share.concurrency,
        "rate": share.rate,
        "in_flight": h2load.in_flight(share),
        "completions_us": completions,  # OK completions, scheduler clock: the coordinator's count check
        "h2load_summary": summaries,
        "outcomes": outcomes,
    }


def _events_main(job: HostJob, load, client, worker, events, base: dict) -> dict:
    """A trigger path's host: the event engine on this host's share, in a process of its own, released at T."""
    from distributed import Event, Variable

    from axon.engines.hosts import events_host

    def failed(why: str) -> dict:
        events.put({"kind": "failed", "host": job.index, "error": why})
        return {**base, "error": why}

    offset = clock.measure_offset(lambda: time.time() + job.clock_skew_s, lambda: client.run_on_scheduler(time.time))
    if mp.current_process().daemon:
        return failed(f"this Dask worker is a daemon process and cannot start the event engine's process; {DAEMON_HINT}")

    def wait_start() -> dict:
        try:
            return Variable(job.names.start, client=client).get(timeout=START_WAIT_S)
        except TimeoutError:
            return {"abort": f"no start time within {START_WAIT_S:.0f} s"}

    stop = Event(job.names.stop, client=client)
    try:
        _wake(job)
        job.share.validate()
        result = events_host.run_on_host(
            job, load, offset,
            ready=lambda: events.put({"kind": "ready", "host": job.index, "offset": offset.as_dict(), "processes": 1}),
            wait_start=wait_start, stopping=stop.is_set, report=lambda event: events.put({**event, "host": job.index}),
        )  # fmt: skip
    except AxonError as exc:
        return failed(str(exc))
    if "error" in result:
        return {**base, "error": result["error"]}
    return {
        **base,
        **result,
        "offset": offset.as_dict(),
        "scheduler_delay_s": worker.scheduler_delay,
        "clock_corrected": job.correct_clock,
        "engine": "events",
        "engine_version": python.version(),
    }


def _native_progress(events, stop, index: int):
    """h2load's progress callback: a "window" event once its log has main-phase rows, progress, stop requests."""
    from axon.engines.hosts.h2load import Stop

    announced, next_report = False, 0.0

    def on_progress(_elapsed: float, logged: int, _p99: float) -> None:
        nonlocal announced, next_report
        if logged > 0 and not announced:
            # h2load logs only main-phase requests: its window is open.
            events.put({"kind": "window", "host": index})
            announced = True
        now = time.monotonic()
        if now >= next_report:
            next_report = now + PROGRESS_INTERVAL_S
            events.put(
                {"kind": "progress", "host": index, "sent": int(logged), "p99_ms": math.nan}
            )  # h2load's log has no running p99
            if stop.is_set():
                raise Stop

    return on_progress


def _follow(pool: python.WorkerPool, events, stop, index: int) -> None:
    """Until the workers finish: progress, a "window" event once requests are measured, stop requests."""
    announced, next_report = False, 0.0
    while pool.running():
        sent, p99 = pool.sent_and_p99()
        if sent > 0 and not announced:
            # The load processes count only requests inside the window: it is open.
            events.put({"kind": "window", "host": index})
            announced = True
        now = time.monotonic()
        if now >= next_report:
            next_report = now + PROGRESS_INTERVAL_S
            events.put({"kind": "progress", "host": index, "sent": int(sent), "p99_ms": float(p99)})
            if stop.is_set():
                pool.stop()
        time.sleep(POLL_S)


def host_shares(spec: LoadSpec, hosts: int) -> list[LoadSpec]:
    """Each host's part: concurrency split evenly, or the rate divided; distinct Poisson seeds.

    Within a host, worker ``i`` draws its arrivals from ``seed + i``; host ``h`` gets seed
    ``seed + h * 1000`` so no two workers anywhere share a schedule (which would send their
    requests in lockstep instead of as independent Poisson streams).
    """
    if spec.mode == "closed":
        from axon.engines.loadgen import split_evenly

        return [
            replace(spec, concurrency=c, seed=spec.seed + h * SEED_STRIDE)
            for h, c in enumerate(split_evenly(spec.concurrency, hosts))
        ]
    bound = spec.max_in_flight // hosts if spec.max_in_flight is not None else None  # the run's bound, shared out
    if bound == 0:
        raise AxonError(f"an in-flight bound of {spec.max_in_flight} cannot be shared by {hosts} hosts")
    return [replace(spec, rate=spec.rate / hosts, seed=spec.seed + h * SEED_STRIDE, max_in_flight=bound) for h in range(hosts)]


SEED_STRIDE = 1000  # more than any host's number of worker processes
