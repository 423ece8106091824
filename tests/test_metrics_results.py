"""Triton metrics parsing and deltas; result files written atomically, read back and merged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from axon.errors import AxonError
from axon.records import results, stats
from axon.serving import triton_metrics

EXPOSITION = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} 1000
nv_inference_request_success{model="other",version="1"} 5
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 2
nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 1
# TYPE nv_inference_count counter
nv_inference_count{model="m",version="1"} 1000
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="m",version="1"} 125
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="m",version="1"} 500000
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="m",version="1"} 250000
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-a"} 0.5
nv_gpu_utilization{gpu_uuid="GPU-b"} 0.25
"""


def test_parse_sums_the_model_counters():
    # prometheus_client names counter samples "<family>_total": matching on sample names found nothing.
    sample = triton_metrics.parse(EXPOSITION, "m")
    assert sample["success"] == 1000 and sample["failure"] == 3 and sample["executions"] == 125
    assert sample["rejected"] == 2  # the failures whose reason is REJECTED: Triton's queue policy
    assert sample["gpu_utilization"] == pytest.approx(0.375)


def test_delta_is_per_run_not_cumulative():
    before = triton_metrics.parse(EXPOSITION, "m")
    after = triton_metrics.parse(
        EXPOSITION.replace(" 1000\n", " 1800\n").replace(" 125\n", " 150\n").replace(" 500000\n", " 580000\n"), "m"
    )
    d = triton_metrics.delta(before, after)
    assert d.success_count == 800 and d.inference_count == 800 and d.execution_count == 25
    assert d.avg_batch_size == pytest.approx(32.0)
    assert d.queue_us_per_request == pytest.approx(100.0)
    assert d.compute_infer_us_per_request == 0.0 and d.failure_count == 0


def _run(seed: int, scale: float) -> dict:
    hist = stats.new_histogram()
    for v in np.random.default_rng(seed).exponential(0.002 * scale, 2000):
        stats.record_seconds(hist, v)
    return {
        "requests": {"sent": 2001, "ok": 2000, "failures": {"DEADLINE_EXCEEDED": 1}},
        "throughput_rps": 1000.0,
        "latency_ms": stats.LatencySummary.of(hist).as_dict(),
        "histogram": stats.encode(hist),
    }


def test_results_round_trip_and_merge(tmp_path):
    runs = [_run(1, 1.0), _run(2, 3.0)]
    path = tmp_path / "out" / "r.json"
    results.write_results(path, runs)
    assert results.read_results(path) == runs
    assert not list(path.parent.glob(".r.json.*")), "no temporary file left behind"
    merged = results.merge_runs(runs)
    assert merged["requests"] == {"sent": 4002, "ok": 4000, "failed": 2, "failures": {"DEADLINE_EXCEEDED": 2}}
    assert merged["throughput_rps"] == 2000.0 and merged["latency_ms"]["count"] == 4000
    assert runs[0]["latency_ms"]["p50"] < merged["latency_ms"]["p50"] < runs[1]["latency_ms"]["p50"]


def test_unreadable_results(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AxonError, match="cannot read"):
        results.read_results(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": 0, "runs": []}))
    with pytest.raises(AxonError, match="schema version"):
        results.read_results(tmp_path / "old.json")


@pytest.mark.parametrize(
    "verification, classes",
    [
        ({"server_failures_in_window": 5, "server_rejected_in_window": 3}, {"REJECTED": 3, "SERVER_FAILURE": 2}),
        ({"server_failures_in_window": 4, "server_rejected_in_window": 4}, {"REJECTED": 4}),
        ({"server_failures_in_window": 2}, {"SERVER_FAILURE": 2}),  # a server that gives no reasons
        ({"server_failures_in_window": 0, "server_rejected_in_window": 0}, {}),
        ({"verified": False}, {}),  # no scrapes in the window
    ],
)
def test_the_native_engine_splits_triton_failures_by_reason(verification, classes):
    from axon.engines import h2load_runner

    assert h2load_runner.server_failure_classes(verification) == classes
