"""`axon direct`: the model in-process, one record per case in the common schema."""

from __future__ import annotations

import json

import pytest

from axon.case import run_direct
from tests.helpers import assert_clean_error, run_axon

V1 = "particle_classifier_v1"


def test_direct_record(artifacts, validation_rows):
    r = run_direct(
        V1,
        artifacts / "models" / V1 / "model.onnx",
        validation_rows[0],
        rows_per_request=16,
        threads=1,
        duration_s=0.5,
        warmup_s=0.1,
        dataset={"name": "synthetic"},
    )
    assert r["engine"]["name"] == "direct" and r["engine"]["tool"] == "onnxruntime" and r["engine"]["threads"] == 1
    assert r["passed"] and r["complete"] and r["requests"]["ok"] == r["requests"]["sent"] > 10
    assert r["throughput_inferences_per_s"] == pytest.approx(16 * r["throughput_rps"])
    assert (
        r["client"]["cpu_us_per_row"] == pytest.approx(r["client"]["cpu_us_per_request"] / 16)
        and r["client"]["cpu_us_per_request"] > 0
    )
    assert r["client"]["client_bound"] is False and r["server_metrics"] is None and r["server"]["backend"] == "in-process"
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert r["load"]["rows_per_request"] == 16 and r["load"]["threads"] == 1


def test_direct_cli(artifacts, tmp_path):
    out = tmp_path / "direct.json"
    done = run_axon(
        "direct",
        "--model",
        "v1",
        "--artifacts",
        str(artifacts),
        "--rows-per-request",
        "1,8",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--repeat",
        "2",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [(r["load"]["rows_per_request"], r["repeat"]["index"]) for r in runs] == [(1, 0), (1, 1), (8, 0), (8, 1)]
    assert "CPU µs/row" in done.stdout and "particle_classifier_v1" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "v7"], "no ONNX model for 'v7'"),
        (["--model", "v3"], "axon train --models v3"),  # a known architecture that was not trained
        (["--rows-per-request", "0"], "every value must be >= 1"),
        (["--rows-per-request", "1,x"], "expected comma-separated whole numbers"),
        (["--threads", "0"], "every value must be >= 1"),
        (["--repeat", "0"], "--repeat must be >= 1"),
    ],
)
def test_direct_bad_input(artifacts, args, message):
    assert_clean_error(run_axon("direct", "--artifacts", str(artifacts), *args), message)


def test_direct_missing_onnx_file(tmp_path):
    assert_clean_error(run_axon("direct", "--artifacts", str(tmp_path)), "no ONNX model for 'particle_classifier_v1'")
