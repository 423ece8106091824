"""The engine interface: one :class:`Engine` protocol, one input (:class:`Workload`), one output.

- ``python``: raw grpc.aio with pre-serialised requests (:mod:`axon.engines.python`); closed
  and open loop, varied payloads, sampled correctness checks.
- ``native``: h2load, nghttp2's HTTP/2 generator (:mod:`axon.engines.native`); closed loop
  only, one body, its counts checked against Triton's own counters.
- ``direct``: the model in-process with onnxruntime, no server (:mod:`axon.engines.direct`).
- many hosts: :class:`axon.engines.hosts.dask.DaskHosts` places python-engine workers on Dask workers.

Whatever the engine, a run ends as an :class:`EngineRun`: one :class:`WorkerOutcome` per worker
(an encoded HDR histogram of OK latencies, counts by status, the window's length, client CPU),
Triton's metrics at the window's edges, and what the engine was. :func:`axon.case.run_case` turns
that into the one result record, so windows, percentiles and verdicts are written once.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict, runtime_checkable

from axon.errors import AxonError

if TYPE_CHECKING:
    import numpy as np

    from axon.engines.loadgen import LoadSpec
    from axon.serving.endpoints import Endpoints

ENGINES = ("auto", "native", "python")  # what a user may ask for; "direct" is its own command
H2LOAD = "h2load"
H2LOAD_INSTALL_HINT = "install h2load: apt-get install nghttp2-client (Debian/Ubuntu) or brew install nghttp2 (macOS)"


Progress = Callable[[float, int, float], None]  # (elapsed s in the window, requests sent, current p99 ms)
Guard = Callable[[], "str | None"]
Scrape = Callable[[], dict]  # one sample of Triton's metrics for the case's model; raises ServerError


class WorkerOutcome(TypedDict, total=False):
    """What one load worker (a process, an h2load run, the in-process loop) measured.

    The first eleven keys are always there; the rest only where the engine has them.
    """

    index: int
    latency: str  # encoded HDR histogram of OK latencies (µs)
    lag: str  # encoded HDR histogram of send lag behind the schedule (µs); "" in closed loop
    sent: int  # requests sent inside the window
    ok: int
    failures: dict[str, int]  # by gRPC status (or the engine's own class of failure)
    checked: int  # responses compared with local onnxruntime
    mismatches: int
    measured_s: float
    client_cores: float  # CPU cores this worker used over the window
    incomplete_reason: str | None
    client_cpu_s: float
    client_cpu_requests: int
    failure_details: dict[str, str]  # one message per failure class, as the server said it
    outages: int
    window_start_wall: float
    timeline: list[dict] | None
    error: str  # the worker died: why (its counts are then absent)
    # Open loop, where the engine can tell the server holding requests back from its own lateness (native):
    client_lag: str  # encoded HDR histogram of the send lag the client itself is to blame for (µs; 0 where the server held it)
    uncorrected: str  # encoded HDR histogram of latency from the actual send (µs): the view coordinated omission would give
    server_held: int  # requests sent late because the server held requests (or every stream) when they fell due
    rejected_latency: (
        str  # python engine: encoded HDR histogram of the REJECTED requests' latency (µs), kept apart from ``latency``
    )


@dataclass(frozen=True)
class Workload:
    """Everything an engine needs for one case, prepared once by :func:`axon.case.run_case`.

    ``payloads`` are serialised ModelInferRequests (the python engine cycles through them; the
    native engine posts the first); ``expected`` their reference outputs, or None when there is
    nothing to compare with. ``features`` and ``reference_onnx`` serve the direct engine.
    """

    spec: LoadSpec
    endpoints: Endpoints
    payloads: list[bytes]
    expected: list[dict[str, np.ndarray]] | None  # every output of each payload's reference answer, by name
    scrape: Scrape | None = None
    on_progress: Progress | None = None
    client_bound_cores: float = 0.8
    features: list[dict[str, np.ndarray]] | None = None  # the direct engine's calls: each one's inputs by name
    reference_onnx: Path | None = None
    # Why the load must stop now (the server axon started died, or its memory passed the
    # limit), else None; an engine calls it while it waits on its workers and stops them.
    guard: Guard | None = None


@dataclass
class EngineRun:
    """What an engine measured; ``outcomes`` holds one :class:`WorkerOutcome` per worker."""

    outcomes: list[WorkerOutcome]
    before: dict | None  # Triton's metrics sample at the window's start (None: not scraped)
    after: dict | None
    interrupted: bool
    info: dict  # name, tool, version, requested, notice
    extra: dict = field(default_factory=dict)  # engine-specific record fields


@runtime_checkable
class Engine(Protocol):
    """What offers the load. ``payload_limit`` bounds the distinct request bodies it sends."""

    name: str
    payload_limit: int

    def run(self, work: Workload) -> EngineRun: ...


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "native" or "python"
    requested: str
    notice: str | None  # why auto did not pick native, said in output and record


# The options that name the engine and the metrics URL: the CLI's by default; the pytest
# plugin passes its own, so every message names an option the user can actually type.
CLI_OPTIONS = {"engine": "--engine", "metrics_url": "--metrics-url", "connections": "--connections", "duration": "--duration"}


@lru_cache(maxsize=1)
def h2load_version() -> str | None:
    """``nghttp2/1.52.0`` for the h2load on PATH, or None when there is none."""
    path = shutil.which(H2LOAD)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    return words[-1] if words else "unknown"


# Said in the record and output of a native run over TLS: h2load encrypts but does not verify.
H2LOAD_TLS_UNVERIFIED = "h2load does not verify the server's TLS certificate (nghttp2 sets SSL_VERIFY_NONE): the traffic is encrypted, the server unauthenticated"


POISSON_ON_PYTHON = "Poisson arrivals run on the python engine (h2load has no Poisson mode)"


def choose(
    requested: str,
    mode: str,
    has_metrics: bool,
    options: dict[str, str] = CLI_OPTIONS,
    tls: bool = False,
    on_unavailable: str = "stop",
    distribution: str = "constant",
    h2load_missing: str | None | bool = False,
) -> EngineChoice:
    """The engine for a case. ``auto`` prefers native (closed loop, constant-rate open loop); native never guesses.

    Open loop with constant spacing runs on h2load's ``--rps``, its latencies timed from each
    request's due time (no coordinated omission: :mod:`axon.engines.native_open`). Poisson
    arrivals run on python: h2load has no Poisson mode (its ``--timing-script-file`` fell
    seconds behind a Poisson schedule, issue 19). The native engine needs Triton's metrics to check its counts, since
    h2load sees HTTP status but not gRPC status. Two more cases go to python under ``auto``:
    TLS (h2load does not verify the server's certificate; ``--engine native`` still runs, and
    its record says so) and ``on_unavailable="continue"`` (h2load does not reconnect to a
    restarted server, so ``--engine native`` refuses it). ``options`` names the face's options in messages.
    ``h2load_missing``: where the load runs elsewhere (many hosts), why h2load can't run there,
    or None when it can; False (the default) looks for h2load on this machine.
    """
    if requested not in ENGINES:
        raise AxonError(f"unknown engine {requested!r}; choose from {', '.join(ENGINES)}")
    if requested == "python":
        return EngineChoice("python", requested, None)
    poisson = mode != "closed" and distribution == "poisson"
    if poisson and requested == "native":
        raise AxonError(
            f"{options['engine']} native can't run Poisson arrivals: h2load has no Poisson mode (use {options['engine']} python, or constant spacing)"
        )
    if on_unavailable == "continue" and requested == "native":
        raise AxonError(
            "--engine native can't run with --on-unavailable continue: h2load does not reconnect to a restarted server (use --engine python)"
        )
    problem = None
    if on_unavailable == "continue":
        problem = "--on-unavailable continue runs on the python engine (h2load does not reconnect to a restarted server)"
    elif tls and requested == "auto":
        problem = "TLS runs on the python engine, which verifies the server's certificate (h2load does not)"
    elif poisson:
        problem = POISSON_ON_PYTHON
    elif h2load_missing is not False:
        problem = h2load_missing or None
    elif h2load_version() is None:
        problem = f"h2load not found ({H2LOAD_INSTALL_HINT})"
    if problem is None and not has_metrics:
        problem = f"no Triton metrics endpoint to check h2load's counts against (give {options['metrics_url']})"
    if problem is None:
        return EngineChoice("native", requested, H2LOAD_TLS_UNVERIFIED if tls else None)
    if requested == "native":
        raise AxonError(f"{options['engine']} native can't run this case: {problem}")
    # auto: Poisson on python is by design, said as such rather than as a fallback.
    notice = problem if poisson else f"auto engine fell back to python: {problem}"
    return EngineChoice("python", requested, notice)


def stop_h2load(proc: subprocess.Popen) -> None:
    """Stop an h2load child at once; the rows it logged so far are on disk.

    SIGTERM, not SIGINT: axon run as a background job or under nohup passes SIGINT on to its
    children ignored, and h2load would then run out its whole window. (Resetting SIGINT in a
    pre-exec hook instead is unsafe: the hook makes grpc's fork handlers run in the child,
    whose restarted poller met the closed descriptors and aborted h2load with SIGABRT.)
    """
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
