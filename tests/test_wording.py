"""Records and wording that must not mislead (issue 21, section 5)."""

from __future__ import annotations

import math

from axon.case import Target, _server_metrics
from axon.cli.bench import table
from axon.engines import EngineRun
from axon.serving.endpoints import Endpoints


def _run(interrupted: bool) -> EngineRun:
    return EngineRun([], None, None, interrupted, {"name": "native"})


def test_an_interrupted_run_with_window_requests_does_not_claim_the_window_never_started():
    target = Target(Endpoints("127.0.0.1:1", metrics="http://127.0.0.1:2/metrics"))
    _, said = _server_metrics(_run(True), target, sent=9_441)
    assert said == "the run was interrupted before Triton's metrics were read at the window's end"
    _, said = _server_metrics(_run(True), target, sent=0)
    assert said == "the run was interrupted before the window's start"


def test_the_table_shows_a_dash_not_nan_for_cpu_never_measured():
    record = {
        "model": "particle_classifier_v1", "batching": "on", "load": {"mode": "closed", "concurrency": 64}, "engine": {"name": "native"},
        "repeat": None, "throughput_rps": 1000.0, "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0}, "requests": {"failed": 0},
        "server_metrics": None, "client": {"cores_per_process": [math.nan], "client_bound": False},
        "passed": False, "verdicts": [], "incomplete_reason": "interrupted", "correctness": {"enabled": True, "reason": None},
    }  # fmt: skip
    row = table([record]).splitlines()[2]
    assert "nan" not in row and row.split()[-2:] == ["-", "interrupted"], row
