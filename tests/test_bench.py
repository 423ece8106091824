"""The load generator against the real embedded Triton: every mode and every failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from axon.case import Target, run_case
from axon.engines.loadgen import LoadSpec
from axon.errors import AxonError, ServerError
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from tests.helpers import LineWatcher, assert_clean_error, run_axon, start_axon, window_under_way

pytestmark = pytest.mark.server
V1 = "particle_classifier_v1"
QUICK = {"duration_s": 2.0, "warmup_s": 0.5, "timeout_s": 5.0, "sample_every": 10, "engine": "python"}


@pytest.fixture(scope="module")
def on_server(server_v1):
    """These tests only read from their server: the session's shared one (no start of its own)."""
    return server_v1


def _run(server, artifacts, features, **spec):
    target = Target(server.endpoints, "embedded", server.version, "on")
    return run_case(
        LoadSpec(V1, **{**QUICK, **spec}), target, features, artifacts / "models" / V1 / "model.onnx", {"name": "synthetic"}
    )


def test_closed_loop_record(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], concurrency=8)
    assert r["complete"] and r["passed"], r["verdicts"]
    # Every request succeeded; how many there were depends on the machine, not on axon.
    assert r["requests"]["sent"] == r["requests"]["ok"] > 0
    assert (
        r["correctness"]["enabled"]
        and r["correctness"]["checked"] >= r["requests"]["ok"] // 10
        and r["correctness"]["mismatches"] == 0
    )
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert r["throughput_rps"] == pytest.approx(r["requests"]["ok"] / r["measured_s"])
    sm = r["server_metrics"]
    # The server's count of the window's requests agrees with the client's, within the edges.
    # Above: only the few sent in the warm-up and answered after the start scrape, plus the
    # requests in flight (8), can add to Triton's count. Below: what the window served while the
    # start scrape was under way is missing from it, and on a loaded machine a scrape can take
    # a large share of a 2 s window; a delta that counts the warm-up or the whole server's life
    # is off by far more than either margin.
    ok = r["requests"]["ok"]
    assert 0.6 * ok <= sm["success_count"] <= 1.1 * ok + 8, (sm["success_count"], ok)
    assert sm["avg_batch_size"] >= 1 and sm["queue_us_per_request"] > 0 and sm["compute_infer_us_per_request"] > 0
    assert 0 < r["client"]["cores_per_process"][0] < 2.5
    assert r["dataset"] == {"name": "synthetic"} and r["server"]["version"] == on_server.version


def test_open_loop_poisson_keeps_its_schedule(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], rate=200.0, distribution="poisson")
    assert r["load"]["mode"] == "open" and r["load"]["distribution"] == "poisson"
    assert r["requests"]["sent"] == pytest.approx(400, rel=0.25)
    assert r["schedule"]["lag_p99_ms"] >= 0 and r["schedule"]["offered_rps"] == 200.0
    assert r["requests"]["failed"] == 0


def test_rows_per_request_and_processes(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], concurrency=4, rows_per_request=4, processes=2)
    assert len(r["client"]["cores_per_process"]) == 2
    assert r["throughput_inferences_per_s"] == pytest.approx(4 * r["throughput_rps"])
    assert r["server_metrics"]["inference_count"] == pytest.approx(4 * r["server_metrics"]["success_count"])
    assert r["passed"] and r["correctness"]["mismatches"] == 0


def test_request_count_mode(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], concurrency=4, requests=300, warmup_s=0.2)
    assert 300 <= r["requests"]["sent"] <= 300 + 4


def test_requests_the_model_cannot_take_are_refused_before_any_load(artifacts, validation_rows):
    # Batching off serves max_batch_size 1 (read from the served config): 2-row requests would
    # all be rejected, so the run is refused up front, naming the limit, instead of measured.
    refused = pytest.raises(AxonError, match="--rows-per-request 2 exceeds model 'particle_classifier_v1''s max_batch_size 1")
    with EmbeddedServer(embedded_repository(artifacts, "off"), models=[V1]) as off, refused:
        _run(off, artifacts, validation_rows[0], concurrency=2, rows_per_request=2, duration_s=1.0, warmup_s=0.2)


def test_unknown_model(on_server, validation_rows):
    with pytest.raises(ServerError, match="not served"):
        run_case(LoadSpec("nope", concurrency=1, **QUICK), Target(on_server.endpoints), validation_rows[0])


def _kill_server_mid_window(artifacts, tmp_path, *engine_args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `axon bench` against a server, kill the server once axon reports requests measured
    in its window (its own progress line: independent of the machine's speed), return the result."""
    server = EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1])
    server.start()
    out = tmp_path / "partial.json"
    ep = server.endpoints
    proc = start_axon(
        "bench",
        "--url",
        ep.grpc,
        "--metrics-url",
        ep.metrics,
        "--artifacts",
        str(artifacts),
        "--concurrency",
        "8",
        "--duration",
        "60",
        "--warmup",
        "0.5",
        "--timeout",
        "3",
        "--output",
        str(out),
        *engine_args,
    )
    try:
        stderr = LineWatcher(proc.stderr)
        stderr.wait_for(window_under_way, timeout_s=120)
        # A crash, not a shutdown: a SIGTERMed Triton first unloads its models, and clients then
        # see NOT_FOUND (reported as "model not served") before the server goes.
        os.killpg(server.pid, signal.SIGKILL)
        started = time.monotonic()
        stdout = proc.stdout.read()
        proc.wait(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
        proc.kill()
    assert elapsed < 30, "a dead server must not hang the run"
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr.rest())
    assert_clean_error(done, "incomplete", "server unavailable")
    (run,) = json.loads(out.read_text())["runs"]
    return done, run


def test_server_dying_mid_run_saves_a_partial_result(artifacts, tmp_path):
    _, run = _kill_server_mid_window(artifacts, tmp_path, "--engine", "python")
    assert run["complete"] is False and run["incomplete_reason"] == "server unavailable"
    assert run["engine"]["name"] == "python"
    assert run["requests"]["ok"] > 0 and run["requests"]["failures"].get("UNAVAILABLE", 0) > 0


def test_ctrl_c_keeps_what_was_measured(on_server, artifacts, tmp_path):
    out = tmp_path / "interrupted.json"
    proc = start_axon(
        "bench",
        "--url",
        on_server.endpoints.grpc,
        "--artifacts",
        str(artifacts),
        "--concurrency",
        "4",
        "--duration",
        "60",
        "--warmup",
        "0.5",
        "--output",
        str(out),
    )
    # Interrupt once axon itself reports requests measured inside the window.
    LineWatcher(proc.stderr).wait_for(window_under_way, timeout_s=120)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    (run,) = json.loads(out.read_text())["runs"]
    assert run["incomplete_reason"] == "interrupted" and run["requests"]["ok"] > 0


def test_cli_bad_input(on_server, tmp_path):
    url = on_server.endpoints.grpc
    assert_clean_error(run_axon("bench", "--url", url, "--concurrency", "0"), "must be > 0")
    assert_clean_error(run_axon("bench", "--url", url, "--rate", "0"), "must be > 0")
    assert_clean_error(run_axon("bench", "--url", url, "--duration", "-1"), "must be > 0")
    assert_clean_error(run_axon("bench", "--url", url, "--concurrency", "2000"), "between 1 and 1024")
    # No --artifacts: synthetic rows, said in a notice; the server's answer is what fails.
    assert_clean_error(run_axon("bench", "--url", url, "--model", "particle_classifier_v9"), "not served")
    assert_clean_error(run_axon("bench", "--url", "127.0.0.1:9"), "unreachable")


def test_cli_sweep_writes_results_and_a_table(on_server, artifacts, tmp_path):
    out = tmp_path / "sweep.json"
    done = run_axon(
        "bench",
        "--url",
        on_server.endpoints.grpc,
        "--metrics-url",
        on_server.endpoints.metrics,
        "--artifacts",
        str(artifacts),
        "--sweep",
        "1,4",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["load"]["concurrency"] for r in runs] == [1, 4]
    assert all(r["server_metrics"] is not None for r in runs)
    assert "c=1" in done.stdout and "c=4" in done.stdout and "req/s" in done.stdout
