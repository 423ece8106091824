"""Load engines: what offers the load. Each hands the measurement core the same thing.

- ``python``: raw grpc.aio with pre-serialised requests (:mod:`axon.engines.python`); closed
  and open loop, varied payloads, sampled correctness checks.
- ``native``: h2load, nghttp2's HTTP/2 generator (:mod:`axon.engines.native`); closed loop
  only, one body, its counts checked against Triton's own counters.

Whatever the engine, a run ends as an :class:`EngineRun`: per-worker outcomes (an encoded
HDR histogram of OK latencies, counts by status, the window's length, client CPU), Triton's
metrics at the window's edges, and what the engine was. :func:`axon.case.run_case` turns that
into the one result record, so windows, percentiles and verdicts are written once.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache

from axon.errors import AxonError

ENGINES = ("auto", "native", "python")
H2LOAD = "h2load"
H2LOAD_INSTALL_HINT = "install h2load: apt-get install nghttp2-client (Debian/Ubuntu) or brew install nghttp2 (macOS)"


@dataclass
class EngineRun:
    """What an engine measured; ``outcomes`` holds one dict per worker (see python.run_worker)."""

    outcomes: list[dict]
    before: dict | None  # Triton's metrics sample at the window's start (None: not scraped)
    after: dict | None
    interrupted: bool
    info: dict  # name, tool, version, requested, notice
    extra: dict = field(default_factory=dict)  # engine-specific record fields


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "native" or "python"
    requested: str
    notice: str | None  # why auto did not pick native, said in output and record


# The options that name the engine and the metrics URL: the CLI's by default; the pytest
# plugin passes its own, so every message names an option the user can actually type.
CLI_OPTIONS = {"engine": "--engine", "metrics_url": "--metrics-url"}


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


def choose(requested: str, mode: str, has_metrics: bool, options: dict[str, str] = CLI_OPTIONS, tls: bool = False, on_unavailable: str = "stop") -> EngineChoice:
    """The engine for a case. ``auto`` prefers native for closed loop; native never guesses.

    Open loop always runs on python: h2load's ``--rps`` queues late requests, which is
    coordinated omission. The native engine needs Triton's metrics to check its counts, since
    h2load sees HTTP status but not gRPC status. Two more cases go to python under ``auto``:
    TLS (h2load does not verify the server's certificate; ``--engine native`` still runs, and
    its record says so) and ``on_unavailable="continue"`` (h2load does not reconnect to a
    restarted server, so ``--engine native`` refuses it). ``options`` names the face's options in messages.
    """
    if requested not in ENGINES:
        raise AxonError(f"unknown engine {requested!r}; choose from {', '.join(ENGINES)}")
    if requested == "python":
        return EngineChoice("python", requested, None)
    if on_unavailable == "continue" and requested == "native":
        raise AxonError("--engine native can't run with --on-unavailable continue: h2load does not reconnect to a restarted server (use --engine python)")
    problem = None
    if on_unavailable == "continue":
        problem = "--on-unavailable continue runs on the python engine (h2load does not reconnect to a restarted server)"
    elif tls and requested == "auto":
        problem = "TLS runs on the python engine, which verifies the server's certificate (h2load does not)"
    elif mode != "closed":
        problem = "open loop runs on the python engine (h2load's --rps queues late requests: coordinated omission)"
    elif h2load_version() is None:
        problem = f"h2load not found ({H2LOAD_INSTALL_HINT})"
    elif not has_metrics:
        problem = f"no Triton metrics endpoint to check h2load's counts against (give {options['metrics_url']})"
    if problem is None:
        return EngineChoice("native", requested, H2LOAD_TLS_UNVERIFIED if tls else None)
    if requested == "native":
        raise AxonError(f"{options['engine']} native can't run this case: {problem}")
    # auto: open loop on python is by design, not a fallback worth a warning.
    notice = None if mode != "closed" else f"auto engine fell back to python: {problem}"
    return EngineChoice("python", requested, notice)
