"""The native engine on many hosts: each host runs h2load for its share; the coordinator checks the sum.

Host side (:func:`prepare`, :func:`launch`, :func:`finish`, called by
:func:`axon.engines.hosts.host.host_main`): the share's h2load command lines are built before
the host reports ready (closed loop: one connection carrying the host's concurrency as
streams, as :mod:`axon.engines.native`; open loop: one h2load process per connection at the
host's rate, as :mod:`axon.engines.native_open`); at the local equivalent of the common start
T the processes are launched; their logs become the same outcomes as on one machine (the same
code), each with its window start on the scheduler's clock. h2load cannot be held at a barrier
once started, so T is when it is *launched*: its warm-up then runs on its own timer, and the
process start (milliseconds) is inside the spread the alignment check judges.

Coordinator side (:func:`verify`): h2load sees HTTP status, not gRPC status, so its counts are
checked against Triton's, as on one machine, but Triton's counters are server-wide: every
host's requests land in them. So the coordinator scrapes Triton twice inside the common window
and compares the success delta with the **sum over hosts** of the requests completed between
those instants. Each host returns its OK completion times already on the scheduler's clock
(int64 µs, sorted: 8 bytes a request, not its rows); the scrape instants are put on the same
clock with the coordinator's offset. The allowed difference is the one-machine slack (every
stream that can be in flight, at each scrape) plus the requests that complete within the clock
uncertainty of each edge.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from axon.engines import h2load_runner, native, native_open
from axon.engines.base import h2load_version, stop_h2load
from axon.engines.h2load_runner import Scrapes
from axon.engines.hosts import clock
from axon.engines.loadgen import LoadSpec
from axon.engines.native_tick import tick_s
from axon.engines.payloads import grpc_frame
from axon.errors import ServerError
from axon.serving.endpoints import grpc_alive

CORRECTNESS_METHOD = h2load_runner.CORRECTNESS_METHOD + " by the coordinator"
METHOD = (
    "Triton's success+failure counters vs the requests every host's h2load log shows completed, "
    "between two scrapes inside the common window (all on the scheduler's clock)"
)


@dataclass
class Plan:
    """One host's h2load processes, built before it reports ready."""

    share: LoadSpec
    tmp: tempfile.TemporaryDirectory
    commands: list[list[str]]
    logs: list[Path]
    connections: int
    streams: int
    threads: int
    rate_per_connection: float | None
    procs: list[subprocess.Popen] = field(default_factory=list)
    launched: list[float] = field(default_factory=list)  # this host's real clock, one per process

    @property
    def tick_s(self) -> float:
        return tick_s(self.rate_per_connection) if self.rate_per_connection else 0.0

    def kill(self) -> None:
        """Whatever happened, no h2load outlives the host's task."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.tmp.cleanup()


def prepare(share: LoadSpec, url: str, tls: bool, headers: dict, payload: bytes) -> Plan:
    """The host's h2load command lines for its share, and the one request body on disk."""
    tmp = tempfile.TemporaryDirectory(prefix="axon-host-h2load-")
    frame = Path(tmp.name) / "request.bin"
    frame.write_bytes(grpc_frame(payload))
    if share.mode == "closed":
        c, m, t = native.topology(share.concurrency, share.connections)
        logs = [Path(tmp.name) / "requests.log"]
        commands = [native.command(url, frame, logs[0], share, tls, headers)]
        return Plan(share, tmp, commands, logs, c, m, t, None)
    clients, streams, per_client = native_open.open_topology(share.rate, share.connections, share.max_in_flight)
    logs = [Path(tmp.name) / f"requests-{i}.log" for i in range(clients)]
    commands = [native_open.command(url, frame, log, share, per_client, streams, tls, headers) for log in logs]
    return Plan(share, tmp, commands, logs, clients, streams, 1, per_client)


def launch(plan: Plan, start_real: float) -> None:
    """Launch h2load at ``start_real`` (this host's real clock); open loop staggers its clients over one tick, as on one machine."""
    n = len(plan.commands)
    for i, cmd in enumerate(plan.commands):
        wait = start_real + i * plan.tick_s / n - time.time()
        if wait > 0:
            time.sleep(wait)
        plan.launched.append(time.time())
        plan.procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))


class Stop(Exception):
    """Raised from the progress callback when the coordinator asks the hosts to stop (Ctrl-C there)."""


def follow(plan: Plan, url: str, tls: bool, headers: dict, on_progress) -> tuple[Scrapes, str | None, bool]:
    """Until every h2load exits: sample h2load's CPU inside the window; (samples, why stopped, interrupted).

    The host has no Triton counters of its own to read (the coordinator reads them once for
    all hosts), so its "scrape" is a gRPC liveness call: it lets :func:`h2load_runner.follow` tell a
    dead server (stop now) from a stalled one (go on), exactly as on one machine.
    """
    endpoints = SimpleNamespace(grpc=url, tls=tls, headers=headers, ca_file=None)

    def alive() -> dict:
        if not grpc_alive(endpoints, timeout_s=plan.share.timeout_s):
            raise ServerError(f"the server at {url} does not answer")
        return {"success": 0, "failure": 0}

    scrapes = Scrapes(alive, [p.pid for p in plan.procs])
    window_start = plan.launched[0] + plan.share.warmup_s
    samples = h2load_runner.scrape_times(window_start, plan.share.duration_s, lead_s=plan.tick_s)
    stopped, interrupted = None, False
    try:
        stopped = h2load_runner.follow(
            plan.procs, samples, scrapes, plan.logs, window_start, plan.share.timeout_s, on_progress, endpoints
        )
    except Stop:
        interrupted = True
        for p in plan.procs:
            stop_h2load(p)
    return scrapes, stopped, interrupted


def finish(
    plan: Plan, scrapes: Scrapes, stopped: str | None, interrupted: bool, to_scheduler
) -> tuple[list[dict], np.ndarray, list[dict]]:
    """(outcomes, OK completion times in µs on the scheduler's clock, sorted; h2load's summaries).

    ``to_scheduler`` maps this host's real clock (seconds) to the scheduler's.
    """
    spec = plan.share
    outputs = h2load_runner.collect(plan.procs, spec)
    rows = [h2load_runner.read_log(log) for log in plan.logs]
    server_down = stopped is not None
    cut_short = interrupted or server_down
    if spec.mode == "closed":
        (stdout, stderr), proc = outputs[0], plan.procs[0]
        # pre/post None: Triton's counters are the coordinator's; the host's own "verification"
        # is only used for the requests completed between its CPU samples.
        outcome, _ = native.outcome(
            spec,
            rows[0],
            proc.returncode,
            stdout,
            stderr,
            scrapes,
            None,
            None,
            server_down,
            interrupted,
            server_down,
            plan.threads,
        )
        outcomes = [outcome]
    else:
        outcomes = []
        h2load = version()
        for i, (r, proc, (stdout, stderr)) in enumerate(zip(rows, plan.procs, outputs)):
            sched = native_open.reconstruct(r, plan.rate_per_connection, plan.streams, version=h2load)
            outcomes.append(
                native_open.outcome(
                    i, spec, sched, proc.returncode, stdout, stderr, scrapes, server_down, interrupted, cut_short, {}, 0
                )
            )  # shed requests: not counted across hosts
    n = len(plan.launched)
    for i, (o, launched) in enumerate(zip(outcomes, plan.launched)):
        # h2load's main phase begins its warm-up after launch; the launch is what T aligned.
        # Open loop's clients are staggered over one tick on purpose: judged against their intended launch.
        start = launched - i * plan.tick_s / n + spec.warmup_s
        o["window_start_wall"] = start
        o["window_start_scheduler"] = to_scheduler(start)
    every = np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)
    ok = every[every[:, 1] == h2load_runner.HTTP_OK]
    done_us = np.sort(ok[:, 0] + ok[:, 2])
    shift_us = round(to_scheduler(0.0) * 1e6)  # a constant shift: minus the host's clock offset (plus any test skew)
    return outcomes, done_us + shift_us, [h2load_runner.parse_summary(out) for out, _ in outputs]


def in_flight(share: LoadSpec) -> int:
    """The most requests this host can have in flight: its concurrency, or every h2load stream (open loop)."""
    if share.mode == "closed":
        return share.concurrency
    clients, streams, _ = native_open.open_topology(share.rate, share.connections, share.max_in_flight)
    return clients * streams


def scrape_plan(spec: LoadSpec, shares: list[LoadSpec], window_start: float) -> list[float]:
    """When the coordinator scrapes Triton (its clock): inside the common window by the one-machine margin.

    Open loop: one tick later at the start, since each host staggers its clients over a tick.
    """
    tick = max((tick_s(native_open.open_topology(s.rate, s.connections)[2]) for s in shares if s.mode == "open"), default=0.0)
    return h2load_runner.scrape_times(window_start, spec.duration_s, lead_s=tick)


def verify(
    samples: list[dict], coordinator: clock.Offset, hosts: list[dict], pre: dict | None, post: dict | None, error: str | None
) -> dict:
    """Triton's successes between the coordinator's two in-window scrapes against every host's completions.

    ``samples``: the coordinator's scrapes (:attr:`h2load_runner.Scrapes.samples`, its own clock);
    ``hosts``: per host returning a result, ``completions_us`` (scheduler clock), ``in_flight``,
    ``uncertainty_s`` (its offset's).
    """
    whole = {"server_failures_whole_run": int(post["failure"] - pre["failure"]) if post and pre else None}
    if len(samples) != 2:
        return {**whole, "verified": False, "reason": error or "the window was too short or ended before both scrapes"}
    a, b = samples
    # The scrape instants on the scheduler's clock: the midpoints, as on one machine.
    a_mid = clock.on_scheduler_clock((a["t0"] + a["t1"]) / 2, coordinator)
    b_mid = clock.on_scheduler_clock((b["t0"] + b["t1"]) / 2, coordinator)
    lo, hi = round(a_mid * 1e6), round(b_mid * 1e6)
    per_host = [
        int(np.searchsorted(h["completions_us"], hi, "left") - np.searchsorted(h["completions_us"], lo, "left")) for h in hosts
    ]
    client = sum(per_host)
    server_success = int(b["metrics"]["success"] - a["metrics"]["success"])
    server_failures = int(b["metrics"]["failure"] - a["metrics"]["failure"])
    server_rejected = int(b["metrics"].get("rejected", 0) - a["metrics"].get("rejected", 0))
    interval = max(b_mid - a_mid, 1e-9)
    rate = client / interval
    scraping = (a["t1"] - a["t0"]) + (b["t1"] - b["t0"])
    # Each host's edges are known to within its offset's uncertainty plus the coordinator's:
    # its requests completing that close to an edge may fall on either side of it.
    clock_slack = sum(
        math.ceil(2 * n / interval * (h["uncertainty_s"] + coordinator.uncertainty_s)) for n, h in zip(per_host, hosts)
    )
    flight = sum(h["in_flight"] for h in hosts)
    slack = h2load_runner.count_slack(flight, rate, scraping, client) + clock_slack
    verified = abs(server_success + server_failures - client) <= slack and server_success > 0
    return {
        **whole,
        "verified": bool(verified),
        "method": METHOD,
        "interval_s": interval,
        "client_completed": client,
        "client_completed_per_host": per_host,
        "server_success": server_success,
        "server_failures_in_window": server_failures,
        "server_rejected_in_window": server_rejected,
        "allowed_difference": slack,
        "clock_allowance": clock_slack,
    }


def version() -> str | None:
    return h2load_version()
