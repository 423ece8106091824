"""The coordinator: load from many hosts on a Dask distributed cluster.

One pinned task per host (Dask worker), never retried and never moved, runs axon's python
engine on that host (:mod:`axon.engines.hosts.host`). The start has two phases: every host reports
ready through a Dask Queue; the coordinator then sets a start time T on the scheduler's clock,
a lead ahead of now longer than any round trip seen, through a Dask Variable; each host starts
at its own clock's equivalent of T. Dask carries only this and the results, never a request.

What comes back is the python engine's outcomes, one per load process on every host, so
:func:`axon.case.run_case` merges their histograms exactly as it does for one machine. The
record gains ``hosts``: the clock sync (offsets, T, the spread of window starts and its limit)
and a per-host breakdown. A host lost mid-run makes the run incomplete; what the other hosts
measured is kept, and the lost host's task is never rerun.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from axon.engines import CLI_OPTIONS, H2LOAD_INSTALL_HINT, EngineChoice, EngineRun, Workload, choose, h2load_runner
from axon.engines.hosts import clock
from axon.engines.hosts import h2load as host_h2load
from axon.engines.hosts.host import HostJob, HostLoad, RunNames, host_main, host_shares, probe
from axon.engines.loadgen import LoadSpec
from axon.engines.native_tick import tick_s
from axon.engines.payloads import MAX_DISTINCT_PAYLOADS
from axon.errors import AxonError, ServerError
from axon.records import stats
from axon.records.schema import add_counts

CONNECT_TIMEOUT_S = 5.0  # reaching the scheduler, said in one line if it fails
READY_WAIT_S = 180.0  # every host's load processes spawned, connected and ready
RESULT_GRACE_S = 30.0  # after the window (and one request timeout) a host that has not reported is lost
MEMBERSHIP_CHECK_S = 1.0  # how often the coordinator asks the scheduler which workers are alive
POLL_S = 0.1
RESULT_FETCH_S = 30.0  # a finished task's result, fetched from its worker
ALLOWED_FAILURES_KEY = "distributed.scheduler.allowed-failures"

HostEvent = Callable[[int, str], None]  # (host index, event kind), e.g. (1, "window")


def engine_choice(
    requested: str,
    mode: str,
    distribution: str = "constant",
    h2load: dict[str, str | None] | None = None,
    has_metrics: bool = True,
    tls: bool = False,
    options: dict[str, str] = CLI_OPTIONS,
    on_unavailable: str = "stop",
) -> EngineChoice:
    """The engine on every host, by the one-machine rule (:func:`axon.engines.choose`) with h2load looked for on the workers.

    ``h2load``: each worker's h2load version (None where it has none). ``--engine native``
    with a worker lacking it is refused, naming the worker; ``auto`` then runs python everywhere
    and says why. The coordinator itself needs no h2load.
    """
    missing = [addr for addr, version in (h2load or {}).items() if version is None]
    why = (
        f"h2load not found on Dask worker {missing[0]}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''} ({H2LOAD_INSTALL_HINT})"
        if missing
        else None
    )
    return choose(
        requested,
        mode,
        has_metrics,
        options,
        tls=tls,
        on_unavailable=on_unavailable,
        distribution=distribution,
        h2load_missing=why,
    )


def check_spec(spec: LoadSpec, hosts: int, engine: str = "python") -> None:
    """Refuse, before any work, a load the hosts can't honour."""
    if spec.requests is not None:
        raise AxonError("--dask measures one common window: give --duration, not --requests")
    if engine != "native" and spec.connections is not None:
        raise AxonError("--connections shapes the native engine's load; this case runs on the python engine")
    if spec.mode == "closed":
        # h2load and the event engine offer each host's share from one process.
        per_host = 1 if engine in ("native", "events") or isinstance(spec.processes, str) else spec.processes
        if spec.concurrency < hosts * per_host:
            raise AxonError(
                f"concurrency {spec.concurrency} can't be split over {hosts} hosts x {per_host} processes (need >= {hosts * per_host})"
            )
    if spec.max_in_flight is not None:
        host_shares(spec, hosts)  # the bound must be shareable: said now, not by a failed host later
    if engine == "native" and spec.connections is not None:
        # --connections counts per host; in closed loop it must divide each host's share.
        for share in host_shares(spec, hosts):
            if share.mode == "closed" and share.concurrency % spec.connections:
                raise AxonError(
                    f"--connections {spec.connections} (per host) must divide each host's share of the concurrency ({share.concurrency} of {spec.concurrency})"
                )


class HostsEngine:
    """The :class:`axon.engines.Engine` a case runs on under ``--dask``: the hosts, on the engine chosen for that case."""

    def __init__(self, hosts: DaskHosts, name: str):
        self.hosts, self.name = hosts, name
        # h2load posts one body; the python engine cycles through many.
        self.payload_limit = 1 if name == "native" else MAX_DISTINCT_PAYLOADS

    def run(self, work: Workload) -> EngineRun:
        return self.hosts.run(work, self.name)


@dataclass
class _HostState:
    index: int
    address: str
    future: object = None
    ready: dict | None = None
    started: int = 0  # "started" events: more than one would be a rerun
    window_open: bool = False
    sent: int = 0
    p99_ms: float = 0.0
    result: dict | None = None
    lost: str | None = None


class DaskHosts:
    """A connection to a Dask scheduler and the hosts (workers) that will offer load.

    Parameters
    ----------
    address
        The scheduler, e.g. ``tcp://10.0.0.5:8786``.
    hosts
        How many workers to use (default: all); one load task per worker.
    correct_clocks, clock_skew_s, on_event
        For tests: start at T uncorrected; shift a host's clock (index -> seconds); be told of
        each host's events (``"ready"``, ``"window"``) as they arrive.
    """

    def __init__(
        self,
        address: str,
        hosts: int | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        correct_clocks: bool = True,
        clock_skew_s: dict[int, float] | None = None,
        on_event: HostEvent | None = None,
    ):
        try:
            from distributed import Client
        except ImportError:
            raise AxonError("--dask needs Dask distributed: pip install 'axon[dask]'") from None
        import axon

        self.address = address
        self.correct_clocks = correct_clocks
        self.clock_skew_s = dict(clock_skew_s or {})
        self.on_event = on_event
        try:
            self.client = Client(address, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise AxonError(
                f"cannot reach the Dask scheduler at {address}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        try:
            workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
            if not workers:
                raise AxonError(f"the Dask scheduler at {address} has no workers")
            n = len(workers) if hosts is None else hosts
            if n > len(workers):
                raise AxonError(f"--hosts {n} but the Dask scheduler at {address} has {len(workers)} worker(s)")
            self.addresses = workers[:n]
            self.workers = self.client.run(probe, workers=self.addresses)
            for addr, info in self.workers.items():
                if info["daemon"]:
                    raise AxonError(
                        f"Dask worker {addr} can't start axon's load processes (a daemon process); start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False"
                    )
                if info["axon"] != axon.__version__:
                    raise AxonError(
                        f"Dask worker {addr} runs axon {info['axon']}, this machine {axon.__version__}: install the same axon on every host"
                    )
            import dask

            # dask.config.get pickles by reference to dask, which the scheduler has (axon it may not).
            self.allowed_failures = self.client.run_on_scheduler(dask.config.get, ALLOWED_FAILURES_KEY, None)
        except BaseException:
            self.close()
            raise

    @property
    def n(self) -> int:
        return len(self.addresses)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> DaskHosts:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def notices(self) -> list[str]:
        if self.allowed_failures != 0:
            return [
                f"the Dask scheduler allows {self.allowed_failures} failures per task; axon's hosts refuse a rerun themselves, but set {ALLOWED_FAILURES_KEY}: 0"
            ]
        return []

    def _scheduler_time(self) -> float:
        return self.client.run_on_scheduler(time.time)

    def choose(
        self, spec: LoadSpec, has_metrics: bool = True, tls: bool = False, options: dict[str, str] = CLI_OPTIONS
    ) -> EngineChoice:
        """The engine on every host, and the checks of ``spec`` against these hosts: made once, before any server starts."""
        h2load = {addr: info.get("h2load") for addr, info in self.workers.items()}
        choice = engine_choice(spec.engine, spec.mode, spec.distribution, h2load, has_metrics, tls, options, spec.on_unavailable)
        check_spec(spec, self.n, choice.name)
        return choice

    def engine_for(self, choice: EngineChoice) -> HostsEngine:
        return HostsEngine(self, choice.name)

    def run(self, work: Workload, engine: str = "python") -> EngineRun:
        """Offer the load from every host on ``engine``; the same :class:`EngineRun` one machine's engine returns."""
        spec, endpoints, payloads, expected = work.spec, work.endpoints, work.payloads, work.expected
        scrape, on_progress, client_bound_cores = work.scrape, work.on_progress, work.client_bound_cores

        native = engine == "native"
        pre = None
        if native:
            if scrape is None:
                raise AxonError("the native engine checks h2load's counts against Triton's metrics: it needs a metrics endpoint")
            # The one body every host's h2load will post: checked once, here, before any task is placed.
            h2load_runner.precheck(endpoints, payloads[0], expected[0] if expected else None, spec.timeout_s)
            pre = h2load_runner.scrape_before(scrape)
        load = HostLoad(payloads[:1], None) if native else HostLoad(payloads, expected)
        scrapes = h2load_runner.Scrapes(scrape, []) if scrape is not None else None

        def plan(shares: list[LoadSpec], window_start: float) -> list[float]:
            # python: Triton at the window's edges. native: twice inside the window, for the count check.
            return host_h2load.scrape_plan(spec, shares, window_start) if native else [window_start]

        states, placed = self._place(spec, endpoints, load, engine, scrapes, plan, on_progress)
        interrupted, names, start, lead, worst_rtt, mine = placed
        samples = scrapes.samples if scrapes and not interrupted else []
        before = after = post = None
        if native:
            before, after = (samples[0]["metrics"], samples[1]["metrics"]) if len(samples) == 2 else (None, None)
            with contextlib.suppress(ServerError):
                post = scrape()
        elif samples:
            before = samples[0]["metrics"]
            with contextlib.suppress(ServerError):
                after = scrape()
        run = self._engine_run(
            spec, names, states, before, after, interrupted, client_bound_cores, start, lead, worst_rtt, mine, engine
        )
        if native:
            self._verify(run, states, samples, mine, pre, post, scrapes.error)
        elif scrapes is not None and scrapes.error and before is None:
            run.extra["metrics_error"] = scrapes.error
        return run

    def run_path(
        self, load, spec: LoadSpec, endpoints, scrape_models=None, on_progress=None, client_bound_cores: float = math.inf
    ) -> EngineRun:
        """A trigger path's events from every host (the event engine on each host's share); the :class:`EngineRun` one machine's returns.

        ``load`` is an :class:`axon.engines.hosts.events_host.PathLoad`. Triton's per-model
        counters are read here, before any host's first event and after every host's last, so
        each model's counted calls, summed over hosts, can be held against them.
        """
        from axon.engines.events import ENGINE_INFO
        from axon.engines.hosts import events_host
        from axon.engines.loadgen import MAX_SCHEDULE_LAG_S

        check_spec(spec, self.n, "events")
        before = scrape_models() if scrape_models else None
        states, placed = self._place(spec, endpoints, load, "events", None, lambda shares, window_start: [], on_progress)
        interrupted, names, start, lead, worst_rtt, mine = placed
        after = scrape_models() if scrape_models and not interrupted else None
        run = self._engine_run(
            spec, names, states, None, None, interrupted, client_bound_cores, start, lead, worst_rtt, mine, "events"
        )
        returned = [s.result for s in states if s.result]
        versions = [r["engine_version"] for r in returned]
        run.info = {
            **ENGINE_INFO,
            "version": versions[0] if versions else None,
            "processes": len(returned),
            "hosts": self.n,
            "placement": "dask",
        }
        run.extra.update(
            path_calls=events_host.merged_calls([r["calls"] for r in returned]),
            path_totals=events_host.summed_totals([r["totals"] for r in returned]),
            scrapes=(before, after),
            events_run_ok=sum(r["events_run_ok"] for r in returned),
            max_schedule_lag_s=MAX_SCHEDULE_LAG_S,
        )
        return run

    def _place(self, spec: LoadSpec, endpoints, load, engine: str, scrapes, plan, on_progress) -> tuple[list[_HostState], tuple]:
        """One pinned task per host, the two-phase start, and the hosts followed to their results.

        ``plan(shares, window_start)`` gives the instants (this machine's clock) to scrape
        Triton at through ``scrapes``. Returns the hosts' states and (interrupted, names, T,
        lead, worst round trip, this machine's offset).
        """
        from distributed import Event, Queue, Variable

        names = RunNames(f"axon-{uuid.uuid4().hex[:12]}")
        events = Queue(names.events, client=self.client)
        start_var, stop_event = Variable(names.start, client=self.client), Event(names.stop, client=self.client)
        mine = clock.measure_offset(time.time, self._scheduler_time)
        states = [_HostState(h, addr) for h, addr in enumerate(self.addresses)]
        shares = host_shares(spec, self.n)
        for state, share in zip(states, shares):
            # Scattered to this host once; its load processes get it from there.
            [data] = self.client.scatter([load], workers=[state.address], hash=False)
            job = HostJob(
                state.index,
                names,
                share,
                endpoints.grpc,
                endpoints.tls,
                dict(endpoints.headers),
                self.correct_clocks,
                self.clock_skew_s.get(state.index, 0.0),
                engine,
            )
            state.future = self.client.submit(
                host_main,
                job,
                data,
                key=f"{names.run_id}-host-{state.index}",
                workers=[state.address],
                allow_other_workers=False,
                retries=0,
                pure=False,
            )
        interrupted = False
        start = lead = worst_rtt = math.nan
        try:
            self._wait_ready(states, events, start_var)
            worst_rtt = max([mine.worst_rtt_s] + [s.ready["offset"]["worst_rtt_s"] for s in states])
            lead = clock.start_lead_s(worst_rtt)
            start = self._scheduler_time() + lead
            start_var.set({"start": start})
            window_start = clock.local_start(start, mine) + spec.warmup_s  # on this machine's clock
            self._follow(states, events, spec, window_start, scrapes, plan(shares, window_start) if scrapes else [], on_progress)
        except KeyboardInterrupt:
            interrupted = True
            stop_event.set()
            if math.isnan(start):  # hosts still waiting for T: tell them, rather than let them time out
                start_var.set({"abort": "interrupted"})
            self._collect(states, events, deadline=time.time() + spec.timeout_s + RESULT_GRACE_S)
        with contextlib.suppress(Exception):
            start_var.delete()
        return states, (interrupted, names, start, lead, worst_rtt, mine)

    def _drain(self, states: list[_HostState], events) -> None:
        for event in events.get(batch=True):
            state = states[event["host"]]
            kind = event["kind"]
            if kind == "started":
                state.started += 1
            elif kind == "ready":
                state.ready = event
            elif kind == "window":
                state.window_open = True
            elif kind == "progress":
                state.sent, state.p99_ms = event["sent"], event["p99_ms"]
            if self.on_event is not None and kind in ("ready", "window"):
                self.on_event(state.index, kind)

    def _wait_ready(self, states: list[_HostState], events, start_var) -> None:
        """Phase one: every host's load processes ready. A host that fails instead stops the run now."""
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            self._drain(states, events)
            if all(s.ready for s in states):
                return
            failed = [s for s in states if s.future.done() and not s.ready]
            if failed or time.monotonic() > deadline:
                start_var.set({"abort": "another host failed before the start"})
                s = failed[0] if failed else next(s for s in states if not s.ready)
                why = _result_or_error(s.future).get("error", "no result") if failed else f"not ready within {READY_WAIT_S:.0f} s"
                for other in states:
                    other.future.cancel()
                raise ServerError(f"host {s.index} ({s.address}) did not start: {why}; nothing was measured")
            time.sleep(POLL_S)

    def _follow(self, states, events, spec: LoadSpec, window_start: float, scrapes, plan: list[float], on_progress) -> None:
        """Phase two: scrape Triton at the planned instants (this machine's clock), report progress, collect results."""
        deadline = window_start + spec.duration_s + spec.timeout_s + RESULT_GRACE_S
        next_membership = 0.0
        while not all(s.result is not None or s.lost for s in states):
            self._drain(states, events)
            now = time.time()
            if plan and now >= plan[0]:
                plan.pop(0)
                # A server gone mid-run: the hosts' outcomes will say so; keep them.
                scrapes.take()
            if on_progress is not None:
                p99s = [s.p99_ms for s in states if not math.isnan(s.p99_ms)]  # h2load hosts have no running p99
                on_progress(now - window_start, sum(s.sent for s in states), max(p99s, default=math.nan))
            if time.monotonic() >= next_membership:
                next_membership = time.monotonic() + MEMBERSHIP_CHECK_S
                alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
            else:
                alive = None
            for s in states:
                if s.result is None and not s.lost:
                    self._settle(s, alive, now > deadline)
            wait = plan[0] - time.time() if plan else POLL_S
            time.sleep(min(max(wait, 0.001), POLL_S))
        self._drain(states, events)

    def _collect(self, states, events, deadline: float) -> None:
        while not all(s.result is not None or s.lost for s in states):
            self._drain(states, events)
            for s in states:
                if s.result is None and not s.lost:
                    self._settle(s, None, time.time() > deadline)
            time.sleep(POLL_S)

    @staticmethod
    def _settle(s: _HostState, alive: set | None, overdue: bool) -> None:
        """Take a host's result if it came back; else declare it lost (and cancel, never rerun)."""
        if s.future.done():
            result = _result_or_error(s.future)
            if "outcomes" in result:
                s.result = result
            else:
                s.lost = result.get("error", "no result")
        elif alive is not None and s.address not in alive:
            s.lost = "its Dask worker left the cluster mid-run"
        elif overdue:
            s.lost = "no result within the window plus the grace period"
        if s.lost:
            s.future.cancel()

    def _engine_run(
        self,
        spec,
        names,
        states,
        before,
        after,
        interrupted,
        client_bound_cores,
        start,
        lead,
        worst_rtt,
        mine,
        engine: str = "python",
    ) -> EngineRun:
        outcomes: list[dict] = []
        per_host, starts, uncertainties = [], [], []
        for s in states:
            entry = _breakdown(s, self.workers.get(s.address, {}), client_bound_cores)
            per_host.append(entry)
            if s.result is not None:
                outcomes += s.result["outcomes"]
                for o in s.result["outcomes"]:
                    if "window_start_scheduler" in o:
                        starts.append(o["window_start_scheduler"])
                        uncertainties.append(s.result["offset"]["uncertainty_s"])
            else:
                # The lost host's processes: one error each, so the record says who is missing.
                outcomes.append({"index": s.index, "error": f"host {s.index} ({s.address}) lost: {s.lost}"})
        align = clock.alignment(starts, uncertainties, spec.warmup_s)
        incomplete = []
        if starts and not align.aligned:
            incomplete.append(
                f"window starts spread over {align.bound_s * 1e3:.1f} ms across hosts (measured {align.spread_s * 1e3:.1f} ms plus clock uncertainty), "
                f"over the limit of {align.limit_s * 1e3:.1f} ms ({clock.MAX_START_SPREAD_FRACTION:.0%} of the warm-up)"
            )
        reruns = [s.index for s in states if s.started > 1]
        if reruns:
            incomplete.append(f"host task(s) {reruns} started more than once")
        for h in per_host:
            if h["window_start_s"] is not None:
                h["window_start_offset_ms"] = (h["window_start_s"] - (start + spec.warmup_s)) * 1e3
        sync = {
            "scheduler": self.address,
            "run_id": names.run_id,  # names its Dask queue and variables
            "method": "one pinned Dask task per worker; ready via a Dask Queue, start time T via a Dask Variable; "
            f"offsets NTP-style through the scheduler ({clock.PINGS} pings, shortest round trip kept)",
            "start_s": start,
            "lead_s": lead,
            "worst_rtt_s": worst_rtt,
            "coordinator_offset": mine.as_dict(),
            "clocks_corrected": self.correct_clocks,
            "window_start_spread_s": align.spread_s,
            "spread_bound_s": align.bound_s,
            "spread_limit_s": align.limit_s,
            "spread_limit_rule": f"{clock.MAX_START_SPREAD_FRACTION:g} x warm-up, at least {clock.MIN_SPREAD_LIMIT_S * 1e3:g} ms",
            "aligned": align.aligned,
            "scheduler_allowed_failures": self.allowed_failures,
        }
        versions = [s.result["engine_version"] for s in states if s.result]
        if engine == "native":
            info = _native_info(spec, [s.result for s in states if s.result], versions, self.n)
        else:
            info = {
                "name": "python",
                "tool": "grpc.aio",
                "version": versions[0] if versions else None,
                "processes": sum(h["processes"] or 0 for h in per_host),
                "hosts": self.n,
                "placement": "dask",
            }
        extra = {"record": {"hosts": {"count": self.n, "sync": sync, "per_host": per_host}}, "incomplete": incomplete}
        return EngineRun(outcomes, before, after, interrupted, info, extra)

    @staticmethod
    def _verify(
        run: EngineRun, states: list[_HostState], samples: list[dict], mine: clock.Offset, pre, post, error: str | None
    ) -> None:
        """The native engine's count check over all hosts; Triton's failures in the window become the run's."""
        returned = [s.result for s in states if s.result]
        verification = host_h2load.verify(
            samples,
            mine,
            [
                {
                    "completions_us": r["completions_us"],
                    "in_flight": r["in_flight"],
                    "uncertainty_s": r["offset"]["uncertainty_s"],
                }
                for r in returned
            ],
            pre,
            post,
            error,
        )
        server_failures = verification.get("server_failures_in_window") or 0
        good = [i for i, o in enumerate(run.outcomes) if "error" not in o]
        if server_failures and good:
            # h2load saw them as HTTP 200 and no host can tell which were its own: they are the
            # run's failures (the per-host breakdown keeps what each h2load saw).
            first = dict(run.outcomes[good[0]])
            first["failures"] = {**first["failures"], **h2load_runner.server_failure_classes(verification)}
            first["ok"] = max(first["ok"] - server_failures, 0)
            run.outcomes[good[0]] = first
        run.extra.update(verification=verification, correctness_method=host_h2load.CORRECTNESS_METHOD)
        if error and len(samples) < 2:
            run.extra["metrics_error"] = error


def _native_info(spec: LoadSpec, results: list[dict], versions: list, hosts: int) -> dict:
    """``engine`` of a native many-host record: the totals, each host's shape in ``hosts.per_host``."""
    info = {
        "name": "native",
        "tool": "h2load",
        "version": versions[0] if versions else None,
        "connections": sum(r["connections"] for r in results),
        "processes": sum(r["processes"] for r in results),
        # Hosts' shares may differ by one request in flight: the most streams any connection carries.
        "streams_per_connection": max((r["streams_per_connection"] for r in results), default=None),
        "threads": max((r["threads"] for r in results), default=None),
        "hosts": hosts,
        "placement": "dask",
    }
    if spec.mode == "open" and results:
        per = results[0]["rate_per_connection"]
        info["rate_per_connection"] = per
        info["fan_out"] = (
            f"{hosts} hosts x {results[0]['processes']} h2load process(es), one connection each, at {per:,.6g} req/s each (--rps is per connection)"
        )
        info["schedule"] = (
            f"h2load --rps: due requests released every {tick_s(per) * 1e3:g} ms; latency timed from the release tick"
        )
    return info


def _breakdown(s: _HostState, worker: dict, client_bound_cores: float) -> dict:
    r = s.result or {}
    good = [o for o in r.get("outcomes", []) if "error" not in o]
    cores = [o["client_cores"] for o in good]
    starts = [o["window_start_scheduler"] for o in good if "window_start_scheduler" in o]
    failures = add_counts(o["failures"] for o in good)
    ready = s.ready or {}
    offset = r.get("offset") or ready.get("offset") or {}
    lags = [o["lag"] for o in good if o.get("lag")]
    return {
        "host": s.index,
        "address": s.address,
        "engine": r.get("engine", "python") if s.result else None,
        "engine_version": r.get("engine_version"),
        "connections": r.get("connections"),  # native: h2load's connections on this host (null: python)
        "streams_per_connection": r.get("streams_per_connection"),
        "hostname": r.get("hostname") or worker.get("hostname"),
        "offset_s": offset.get("offset_s"),
        "offset_uncertainty_s": offset.get("uncertainty_s"),
        "scheduler_delay_s": r.get("scheduler_delay_s"),
        "window_start_s": min(starts) if starts else None,
        "late_s": r.get("late_s"),
        "processes": r.get("processes") or ready.get("processes"),
        "concurrency": r.get("concurrency"),
        "rate": r.get("rate"),
        "sent": sum(o["sent"] for o in good) if s.result else None,
        "ok": sum(o["ok"] for o in good) if s.result else None,
        "failures": failures if s.result else None,
        # This host's own histograms (its processes merged): the record's are their exact sum.
        "histogram": stats.encode(stats.merge([o["latency"] for o in good])) if s.result else None,
        "lag_histogram": stats.encode(stats.merge(lags)) if lags else None,
        "client_cores": cores,
        "client_bound": any(c > client_bound_cores for c in cores if not math.isnan(c)),
        "lost": s.lost,
        "last_progress_sent": s.sent,  # for a lost host: what it had measured when last heard from
        "attempts": s.started,
    }


def _result_or_error(future) -> dict:
    try:
        return future.result(timeout=RESULT_FETCH_S)
    except Exception as exc:  # a killed worker (KilledWorker), a cancelled task, a crash on the host
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")}


def describe(record: dict) -> str:
    """A few lines on a many-host run: the window alignment, then one line per host."""
    hosts = record.get("hosts") or {}
    sync = hosts.get("sync") or {}
    lines = [
        f"  {hosts.get('count')} hosts via {sync.get('scheduler')}: window starts within {sync.get('spread_bound_s', math.nan) * 1e3:.1f} ms "
        f"(limit {sync.get('spread_limit_s', math.nan) * 1e3:.1f} ms){'' if sync.get('aligned') else '  MISALIGNED'}"
    ]
    for h in hosts.get("per_host", []):
        if h["lost"]:
            lines.append(
                f"  host {h['host']} {h['address']}: LOST ({h['lost']}); last heard: {h['last_progress_sent']:,} requests"
            )
            continue
        cores = max(h["client_cores"], default=math.nan)
        lines.append(
            f"  host {h['host']} {h['address']} ({h['hostname']}): {h['ok']:,} ok / {h['sent']:,} sent, offset {h['offset_s'] * 1e3:+.2f} ms, "
            f"cpu {cores:.2f}{' [client-bound]' if h['client_bound'] else ''}"
        )
    return "\n".join(lines)
