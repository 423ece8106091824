"""The python engine. Real gRPC load: pre-serialised requests on raw grpc.aio, one worker per thread or process.

Why raw grpc.aio: tritonclient builds and serialises an InferInput per request, which on our
2-core machine made the client, not the server, the bottleneck (FIELD-NOTES: ~0.5 of a native
generator's throughput). Here every ModelInferRequest is serialised once, before the timed
loop, and the loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from axon.engines import EngineRun, WorkerOutcome, Workload, loadgen
from axon.engines.cpu import own_cpu_s
from axon.engines.loadgen import LoadSpec, Outcome, Recorder
from axon.engines.payloads import MAX_DISTINCT_PAYLOADS, MODEL_INFER
from axon.engines.schedule import arrival_offsets
from axon.errors import AxonError, ServerError
from axon.records import stats
from axon.serving.process import die_with_parent

CLIENT_BOUND_CORES = 0.8  # a worker process above this share of one core is the bottleneck
READY_TIMEOUT_S = 120.0  # spawned workers import grpc and numpy before they are ready
# on_unavailable="continue": gRPC's reconnect backoff grows to 120 s by default, so a channel
# could sleep through a restarted server for minutes; capped, it tries again every second.
MAX_RECONNECT_BACKOFF_MS = 1000


class GrpcSender:
    """Send payload i as bytes; turn every RPC error into a counted Outcome."""

    def __init__(
        self,
        url: str,
        payloads: Sequence[bytes],
        timeout_s: float,
        tls: bool = False,
        headers: dict | None = None,
        ca_file: str | None = None,
        reconnect_quickly: bool = False,
    ):
        import grpc

        self._grpc = grpc
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        if reconnect_quickly:
            options += [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS)]
        self.channel = (
            grpc.aio.secure_channel(url, tls_credentials(ca_file), options) if tls else grpc.aio.insecure_channel(url, options)
        )
        # No serialisers: the payloads are already bytes and responses stay bytes until sampled.
        self._call = self.channel.unary_unary(MODEL_INFER)
        self._payloads = payloads
        self._timeout = timeout_s
        self._metadata = tuple((k.lower(), v) for k, v in (headers or {}).items()) or None

    async def __call__(self, i: int) -> Outcome:
        try:
            return Outcome(loadgen.OK, await self._call(self._payloads[i], timeout=self._timeout, metadata=self._metadata))
        except self._grpc.aio.AioRpcError as exc:
            return Outcome(exc.code().name, None, exc.details())

    def with_payloads(self, payloads: Sequence[bytes]) -> GrpcSender:
        """A sender of other bodies on the same channel (a path's calls share one connection)."""
        other = copy.copy(self)
        other._payloads = payloads
        return other

    async def connect(self, timeout_s: float) -> None:
        """Open the connection now rather than on the first request (many hosts: before the start)."""
        await asyncio.wait_for(self.channel.channel_ready(), timeout_s)

    async def close(self) -> None:
        await self.channel.close()


def tls_credentials(ca_file: str | None):
    """gRPC channel credentials that verify the server against ``ca_file`` (the system's CAs when None)."""
    import grpc

    from axon.serving.endpoints import read_ca

    return grpc.ssl_channel_credentials(root_certificates=read_ca(ca_file))


@dataclass
class WorkerJob:
    """One worker's share of the load; picklable so it can go to a process."""

    index: int
    spec: LoadSpec  # with this worker's share of concurrency or rate
    url: str
    tls: bool
    headers: dict
    payloads: list
    expected: list | None  # reference outputs per payload, or None to skip correctness
    connect_first: bool = False  # open the channel before reporting ready (many hosts)
    ca_file: str | None = None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


async def _run(job: WorkerJob, stop_flag: Any, progress: Any, barrier: Any) -> dict:
    spec = job.spec
    clock = time.perf_counter
    keep_going = spec.on_unavailable == "continue"
    sender = GrpcSender(job.url, job.payloads, spec.timeout_s, job.tls, job.headers, job.ca_file, reconnect_quickly=keep_going)
    checker = loadgen.make_checker(job.expected) if job.expected else None
    if job.connect_first:
        try:
            await sender.connect(spec.timeout_s)
        except (asyncio.TimeoutError, OSError) as exc:
            await sender.close()
            return {"index": job.index, "error": f"cannot connect to {job.url} before the start ({type(exc).__name__})"}
    # Start barrier: report ready, then wait for the common start time the parent sets once
    # every worker is ready, so all measurement windows cover the same seconds.
    with barrier.ready.get_lock():
        barrier.ready.value += 1
    while barrier.start_at.value == 0.0:
        if stop_flag is not None and stop_flag.is_set():
            await sender.close()
            return {"index": job.index, "error": "interrupted before the start"}
        await asyncio.sleep(0.005)
    delay = barrier.start_at.value - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    t0 = clock()
    start_wall = time.time()  # where this worker's window sits on the wall clock (many hosts)
    window_start, window_end = loadgen.window_bounds(t0, spec.warmup_s, spec.duration_s, spec.requests)
    recorder = Recorder(
        window_start, window_end, checker, spec.sample_every, stop_when_gone=not keep_going, timeline_s=spec.timeline_s
    )
    stop = asyncio.Event()
    cpu: dict[str, float] = {}
    reason: list[str] = []

    async def monitor() -> None:
        # CPU is sampled at the window's edges; progress and outside stop requests every tick.
        while not stop.is_set():
            now = clock()
            if "start" not in cpu and now >= window_start:
                cpu.update(start=own_cpu_s(), start_wall=now)
            if progress is not None:
                progress[2 * job.index] = recorder.sent
                progress[2 * job.index + 1] = recorder.latency.get_value_at_percentile(99) / 1e3 if recorder.ok else 0.0
            if stop_flag is not None and stop_flag.is_set():
                reason.append("interrupted")
                stop.set()
            if now >= window_end:
                return
            # Wake at the window's start (the CPU sample must line up with it) and at its end.
            next_edge = window_start if "start" not in cpu else window_end
            await asyncio.sleep(min(loadgen.PROGRESS_INTERVAL_S, max(next_edge - now, 0.001)))

    def window_closed() -> None:
        cpu.update(end=own_cpu_s(), end_wall=clock())

    monitor_task = asyncio.ensure_future(monitor())
    try:
        if spec.mode == "closed":
            await loadgen.closed_loop(
                sender, len(job.payloads), spec.concurrency, recorder, clock, stop, spec.requests, first_index=job.index
            )
        else:
            offsets = arrival_offsets(spec.rate, spec.warmup_s + spec.duration_s, spec.distribution, spec.seed + job.index)
            await loadgen.open_loop(sender, len(job.payloads), offsets, recorder, clock, stop, t0, spec.in_flight_per_process())
        window_closed()
    finally:
        stop.set()
        monitor_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor_task
        await sender.close()
    if recorder.server_gone:
        reason.append(recorder.gone_reason)
    end_wall = cpu.get("end_wall", clock())
    measured_s = max(min(end_wall, window_end) - window_start, 1e-9)
    cores = (cpu["end"] - cpu["start"]) / max(end_wall - cpu["start_wall"], 1e-9) if "start" in cpu else float("nan")
    return WorkerOutcome(
        index=job.index,
        latency=stats.encode(recorder.latency),
        lag=stats.encode(recorder.lag) if spec.mode == "open" else "",
        rejected_latency=stats.encode(recorder.rejected_latency),
        sent=recorder.sent,
        ok=recorder.ok,
        failures=dict(recorder.failures),
        checked=recorder.checked,
        mismatches=recorder.mismatches,
        measured_s=measured_s,
        client_cores=cores,
        # CPU over the window and the requests it paid for: the client's cost per request.
        client_cpu_s=cpu["end"] - cpu["start"] if "start" in cpu and "end" in cpu else float("nan"),
        client_cpu_requests=recorder.sent,
        incomplete_reason=reason[0] if reason else None,
        window_start_wall=start_wall + spec.warmup_s,
        failure_details=dict(recorder.details),
        outages=recorder.outages,
        timeline=recorder.encoded_timeline() if spec.timeline_s else None,
    )


def run_worker(job: WorkerJob, barrier: Any, stop_flag: Any = None, progress: Any = None) -> dict:
    loop = _new_loop()
    try:
        return loop.run_until_complete(_run(job, stop_flag, progress, barrier))
    finally:
        loop.close()


class _ThreadValue:
    """The part of multiprocessing.Value's interface the barrier uses, for a thread worker."""

    def __init__(self, value):
        self.value = value
        self._lock = threading.Lock()

    def get_lock(self):
        return self._lock


@dataclass
class Barrier:
    ready: Any  # count of workers set up and waiting
    start_at: Any  # time.time() of the common start; 0.0 until every worker is ready


def _process_main(job: WorkerJob, barrier: Barrier, stop_flag, progress, results) -> None:
    # Ctrl-C goes to the parent; it tells workers to stop through stop_flag.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()  # a killed parent (a lost Dask worker, say) leaves no load generator running on its own
    try:
        results.put(run_worker(job, barrier, stop_flag, progress))
    except BaseException as exc:  # report, don't hang the parent waiting on the queue
        results.put({"index": job.index, "error": f"{type(exc).__name__}: {exc}"})


class WorkerPool:
    """Runs jobs in a thread (one worker) or in spawned processes (several), with progress.

    ``spawn=True`` uses a process even for one job (many hosts: the load runs outside the Dask
    worker's process, so Dask's own event loop never shares a GIL with request timing).
    """

    def __init__(self, jobs: list[WorkerJob], spawn: bool | None = None):
        self.jobs = jobs
        self._threaded = len(jobs) == 1 if spawn is None else not spawn
        if self._threaded:
            self.stop_flag: Any = threading.Event()
            self.progress: Any = [0.0, 0.0]
            self.barrier = Barrier(_ThreadValue(0), _ThreadValue(0.0))
        else:
            ctx = mp.get_context("spawn")
            self.stop_flag = ctx.Event()
            self.progress = ctx.Array("d", 2 * len(jobs), lock=False)
            self.barrier = Barrier(ctx.Value("i", 0), ctx.Value("d", 0.0))
            self._results = ctx.Queue()
            self._procs = [
                ctx.Process(
                    target=_process_main, args=(j, self.barrier, self.stop_flag, self.progress, self._results), daemon=True
                )
                for j in jobs
            ]
        self._outcomes: list[dict] = []

    def start(self, lead_s: float = 0.05, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Start every worker, wait until all are ready, set the common start; return it."""
        self.launch()
        self.wait_ready(timeout_s)
        return self.release(time.time() + lead_s)

    def launch(self) -> None:
        """Start every worker; each reports ready, then waits for :meth:`release`."""
        if self._threaded:
            self._thread = threading.Thread(
                target=lambda: self._outcomes.append(run_worker(self.jobs[0], self.barrier, self.stop_flag, self.progress)),
                daemon=True,
            )
            self._thread.start()
        else:
            for p in self._procs:
                p.start()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.barrier.ready.value < len(self.jobs):
            failed = [o["error"] for o in self._outcomes if "error" in o]
            if time.monotonic() > deadline or not self.running() or failed:
                self.stop()
                why = f": {failed[0]}" if failed else ""
                raise AxonError(
                    f"load-generator workers did not start ({self.barrier.ready.value} of {len(self.jobs)} ready){why}"
                )
            time.sleep(0.005)

    def release(self, start_at: float) -> float:
        """Let every ready worker start at ``start_at`` (``time.time()`` on this machine)."""
        self.barrier.start_at.value = start_at
        return start_at

    def running(self) -> bool:
        if self._threaded:
            return self._thread.is_alive()
        # Drain first: a worker cannot exit while its result still sits in a full pipe.
        self._drain()
        return len(self._outcomes) < len(self.jobs) and any(p.is_alive() for p in self._procs)

    def _drain(self) -> None:
        import queue

        with contextlib.suppress(queue.Empty):
            while True:
                self._outcomes.append(self._results.get_nowait())

    def sent_and_p99(self) -> tuple[int, float]:
        n = len(self.jobs)
        return int(sum(self.progress[2 * i] for i in range(n))), max(self.progress[2 * i + 1] for i in range(n))

    def stop(self) -> None:
        self.stop_flag.set()

    def results(self, timeout_s: float) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        if self._threaded:
            self._thread.join(timeout_s)
        else:
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
            self._drain()
            for p in self._procs:
                if p.pid is None:  # interrupted before it was started
                    continue
                p.join(max(deadline - time.monotonic(), 0.1))
                if p.is_alive():
                    p.kill()
        return list(self._outcomes)


def worker_shares(spec: LoadSpec) -> list[LoadSpec]:
    """Each worker process's part of the load: concurrency split evenly, or rate divided."""
    if spec.mode == "closed":
        return [
            dataclasses.replace(
                spec, concurrency=c, requests=None if spec.requests is None else max(1, spec.requests // spec.processes)
            )
            for c in loadgen.split_evenly(spec.concurrency, spec.processes)
        ]
    return [dataclasses.replace(spec, rate=spec.rate / spec.processes) for _ in range(spec.processes)]


def version() -> str:
    import grpc

    return f"grpcio/{grpc.__version__}"


def run(
    spec: LoadSpec, endpoints: Any, payloads: list[bytes], expected: list | None, on_progress=None, scrape=None, guard=None
) -> EngineRun:
    """Offer ``spec`` from worker threads/processes; scrape Triton at the window's edges.

    ``scrape()`` returns a metrics sample (or raises ServerError); None when there is no
    metrics endpoint. ``on_progress(elapsed_s, sent, p99_ms)`` is called about every 0.1 s.
    ``guard()`` (the run's :class:`axon.serving.watch.ServerWatch`) is asked as often; when it
    gives a reason (the server died, its memory passed the limit), the workers are stopped at
    once and ``extra["stopped_by"]`` holds it.
    """
    ca_file = getattr(endpoints, "ca_file", None)
    jobs = [
        WorkerJob(i, share, endpoints.grpc, endpoints.tls, dict(endpoints.headers), payloads, expected, ca_file=ca_file)
        for i, share in enumerate(worker_shares(spec))
    ]
    pool = WorkerPool(jobs)
    before = after = None
    scrape_error: str | None = None
    interrupted = False
    stopped_by: str | None = None
    try:
        window_start = pool.start() + spec.warmup_s
        while pool.running():
            stopped_by = guard() if guard is not None else None
            if stopped_by:
                pool.stop()
                break
            if before is None and scrape_error is None and scrape is not None and time.time() >= window_start:
                try:
                    before = scrape()
                except ServerError as exc:  # the client's measurement goes on; the record says why metrics are missing
                    scrape_error = f"at the window's start: {exc}"
            if on_progress is not None:
                sent, p99 = pool.sent_and_p99()
                on_progress(time.time() - window_start, sent, p99)
            # Wake right at the window's start so the "before" scrape lines up with it.
            wait = window_start - time.time() if before is None and scrape_error is None and scrape is not None else 0.1
            time.sleep(min(wait, 0.1) if wait > 0 else 0.1)
    except KeyboardInterrupt:
        interrupted = True
        pool.stop()
    outcomes = pool.results(timeout_s=spec.timeout_s + 10)
    if scrape is not None and before is not None:
        try:
            after = scrape()
        except ServerError as exc:  # a dead server or metrics endpoint: keep what the client measured
            scrape_error = f"at the window's end: {exc}"
    elif scrape is not None and scrape_error is None:
        scrape_error = "the window ended before Triton's metrics were read at its start"
    info = {"name": "python", "tool": "grpc.aio", "version": version(), "processes": len(jobs)}
    if spec.mode == "open":
        info["in_flight_limit"] = spec.in_flight_per_process() * len(jobs)
    extra = {"metrics_error": scrape_error} if scrape_error else {}
    if stopped_by:
        extra["stopped_by"] = stopped_by
    return EngineRun(outcomes, before, after, interrupted, info, extra)


# The shortest window the python engine times: its parent reads Triton's counters at the
# window's start and asks the run's guard (a dead server, its memory) on a 0.1 s tick; a
# shorter window is over before it is watched once.
MIN_WINDOW_S = 0.1


class PythonEngine:
    """grpc.aio workers: closed and open loop (Poisson too), many distinct bodies, sampled checks."""

    name = "python"
    payload_limit = MAX_DISTINCT_PAYLOADS
    min_window_s = MIN_WINDOW_S
    min_window_why = "the run's guard and Triton's counters are read on a 0.1 s tick"

    def run(self, work: Workload) -> EngineRun:
        return run(work.spec, work.endpoints, work.payloads, work.expected, work.on_progress, work.scrape, work.guard)
