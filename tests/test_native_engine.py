"""The native engine (h2load) against the real embedded Triton, and how engines are chosen."""

from __future__ import annotations

import os
import shutil

import pytest

from axon import engines
from axon.case import Target, run_case
from axon.engines import h2load_runner, native
from axon.engines.loadgen import LoadSpec
from axon.errors import AxonError, ServerError
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from tests.helpers import assert_clean_error, run_axon
from tests.test_bench import _kill_server_mid_window

V1 = "particle_classifier_v1"
QUICK = {"duration_s": 2.0, "warmup_s": 0.5, "timeout_s": 5.0, "engine": "native"}


def _need_h2load() -> None:
    # CI installs h2load (make setup): there a missing h2load is a failure, not a skip.
    if shutil.which("h2load") is None:
        if os.environ.get("CI"):
            pytest.fail("h2load is missing on CI: make setup should have installed nghttp2-client")
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")


@pytest.fixture(scope="module")
def on_server(server_v1):
    """These tests only read from their server: the session's shared one (no start of its own)."""
    _need_h2load()
    return server_v1


def _run(server, artifacts, features, batching="on", **spec):
    target = Target(server.endpoints, "embedded", server.version, batching)
    return run_case(
        LoadSpec(V1, **{**QUICK, **spec}), target, features, artifacts / "models" / V1 / "model.onnx", {"name": "synthetic"}
    )


@pytest.mark.server
def test_counts_agree_with_tritons_counters(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], concurrency=16)
    assert r["passed"] and r["complete"], (r["verdicts"], r["incomplete_reason"])
    assert r["engine"]["name"] == "native" and r["engine"]["tool"] == "h2load" and r["engine"]["version"].startswith("nghttp2/")
    assert (r["engine"]["connections"], r["engine"]["streams_per_connection"]) == (1, 16)
    v = r["verification"]
    # Over the whole run Triton may count up to N failures: the requests h2load cancels when it
    # stops its streams at the end of -D. Inside the window there must be none.
    assert v["verified"] and v["server_failures_in_window"] == 0 and 0 <= v["server_failures_whole_run"] <= 16
    assert abs(v["server_success"] - v["client_completed"]) <= v["allowed_difference"] and v["client_completed"] > 0
    assert r["requests"]["ok"] == r["requests"]["sent"] > v["client_completed"]
    assert r["throughput_rps"] == pytest.approx(r["requests"]["ok"] / r["measured_s"]) and r["measured_s"] == 2.0
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert r["correctness"]["enabled"] and r["correctness"]["checked"] == 1 and r["correctness"]["mismatches"] == 0
    assert r["server_metrics"]["avg_batch_size"] >= 1
    assert 0 <= r["client"]["cores_per_process"][0] < 1.5


@pytest.mark.server
def test_connections_spread_the_streams(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], concurrency=8, connections=4)
    assert r["passed"] and (r["engine"]["connections"], r["engine"]["streams_per_connection"]) == (4, 2)
    assert r["load"]["connections"] == 4


@pytest.mark.server
def test_a_body_the_server_rejects_is_never_a_passing_run(artifacts, validation_rows, monkeypatch):
    _need_h2load()
    from axon.offline.repository import MLP_SIGNATURE
    from axon.workload.feed import Feed

    # A signature that says 256 rows fit, where the server (batching off) takes one: the 2-row
    # body passes axon's own shape check and is rejected by Triton (HTTP 200, grpc-status 3).
    feed = Feed(rows=validation_rows[0], signature=MLP_SIGNATURE)
    with EmbeddedServer(embedded_repository(artifacts, "off"), models=[V1]) as off:
        with pytest.raises(ServerError, match="rejected the request body.*INVALID_ARGUMENT"):
            _run(off, artifacts, feed, batching="off", concurrency=2, rows_per_request=2)
        # Without the pre-run check, the cross-check with Triton's counters still catches it.
        monkeypatch.setattr(h2load_runner, "precheck", lambda *a, **k: None)
        r = _run(off, artifacts, feed, batching="off", concurrency=2, rows_per_request=2)
    assert not r["passed"]
    assert r["verification"]["verified"] is False and r["verification"]["server_success"] == 0
    assert any(v.startswith("unverified: Triton counted 0 successes") for v in r["verdicts"]), r["verdicts"]


@pytest.mark.server
def test_unknown_model(on_server, validation_rows):
    with pytest.raises(ServerError, match="not served"):
        run_case(LoadSpec("nope", concurrency=1, **QUICK), Target(on_server.endpoints), validation_rows[0])


@pytest.mark.server
def test_server_killed_mid_run(artifacts, tmp_path):
    _need_h2load()
    _, run = _kill_server_mid_window(artifacts, tmp_path, "--engine", "native")
    assert run["engine"]["name"] == "native"
    assert run["complete"] is False and "server unavailable" in run["incomplete_reason"]
    assert run["requests"]["ok"] > 0 and not run["passed"]


def test_choose_engine(monkeypatch):
    monkeypatch.setattr(engines.base, "h2load_version", lambda: "nghttp2/1.52.0")
    assert engines.choose("auto", "closed", True) == engines.EngineChoice("native", "auto", None)
    # Constant-rate open loop runs on h2load (latency from due times); Poisson stays python, said so.
    assert engines.choose("auto", "open", True) == engines.EngineChoice("native", "auto", None)
    assert engines.choose("auto", "open", True, distribution="poisson") == engines.EngineChoice(
        "python", "auto", engines.POISSON_ON_PYTHON
    )
    fallback = engines.choose("auto", "closed", False)
    assert fallback.name == "python" and "no Triton metrics endpoint" in fallback.notice
    with pytest.raises(AxonError, match="no Poisson mode"):
        engines.choose("native", "open", True, distribution="poisson")
    monkeypatch.setattr(engines.base, "h2load_version", lambda: None)
    fallback = engines.choose("auto", "closed", True)
    assert fallback.name == "python" and "h2load not found" in fallback.notice and "nghttp2-client" in fallback.notice
    with pytest.raises(AxonError, match="h2load not found"):
        engines.choose("native", "closed", True)


def test_engine_for_picks_the_closed_or_the_open_loop():
    from axon.engines.native import NativeEngine
    from axon.engines.native_open import NativeOpenEngine

    native_choice = engines.EngineChoice("native", "native", None)
    assert type(engines.engine_for(native_choice, LoadSpec(V1, concurrency=4).validate())) is NativeEngine
    assert type(engines.engine_for(native_choice, LoadSpec(V1, rate=100.0, engine="native").validate())) is NativeOpenEngine
    with pytest.raises(AxonError, match="must divide"):
        engines.engine_for(native_choice, LoadSpec(V1, concurrency=4, connections=3).validate())


def test_topology():
    assert native.topology(64, None, cores=2) == (1, 64, 1)
    assert native.topology(64, 4, cores=2) == (4, 16, 2)
    with pytest.raises(AxonError, match="must divide"):
        native.topology(64, 3)


def test_read_log_and_summary(tmp_path):
    log = tmp_path / "h2.log"
    log.write_text("1795920423478333\t200\t2576\n1795920423478588\t-1\t2676\n17959204234")  # last row cut by a kill
    rows = h2load_runner.read_log(log)
    assert rows.tolist() == [[1795920423478333, 200, 2576], [1795920423478588, -1, 2676]]
    assert h2load_runner.read_log(tmp_path / "missing.log").shape == (0, 3)
    summary = h2load_runner.parse_summary("requests: 10 total, 10 started, 9 done, 8 succeeded, 1 failed, 1 errored, 0 timeout\n")
    assert summary == {"total": 10, "started": 10, "done": 9, "succeeded": 8, "failed": 1, "errored": 1, "timeout": 0}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--engine", "native", "--rate", "100", "--poisson"], "h2load has no Poisson mode"),
        (["--engine", "native", "--url", "127.0.0.1:9"], "no Triton metrics endpoint"),
        (["--engine", "python", "--connections", "2"], "--connections shapes the native engine"),
        (
            [
                "--engine",
                "native",
                "--metrics-url",
                "http://127.0.0.1:9/metrics",
                "--url",
                "127.0.0.1:9",
                "--concurrency",
                "64",
                "--connections",
                "3",
            ],
            "must divide",
        ),
        (["--engine", "nope"], "invalid choice"),
        (["--poisson"], "--poisson shapes open-loop arrivals"),
    ],
)
def test_engine_bad_input(args, message, monkeypatch, tmp_path):
    if "nope" not in args and "--poisson" not in args and "python" not in args:
        _need_h2load()
    assert_clean_error(run_axon("bench", "--artifacts", str(tmp_path), *args), message)


@pytest.mark.server
def test_a_queue_bound_server_shows_no_h2load_count_as_answered(artifacts, validation_rows, tmp_path):
    """A queue of 1 under 8 streams: Triton rejects most requests, h2load counts each as HTTP 200,
    and Triton 2.51 does not count a full queue's rejections, so the counts disagree. The record,
    the table and the report then show the share Triton confirms (marked), never h2load's
    completions as answered requests, and no percentile as the answered requests'."""
    from axon.cli.bench import table
    from axon.offline.repository import with_queue_policy
    from axon.study.report import document, tables

    _need_h2load()
    repo = with_queue_policy(embedded_repository(artifacts, "on"), tmp_path / "repo", 1, 0)
    with EmbeddedServer(repo, models=[V1]) as server:
        r = _run(server, artifacts, validation_rows[0], concurrency=8, max_error_rate=1.0)
    v, apart = r["verification"], r["latency_apart"]
    assert r["passed"] is False and v["verified"] is False and "server_success" in v, (v, r["verdicts"])
    # h2load's HTTP-200 rows are kept apart, not shown as answered latencies.
    assert apart["of"] == "http_200_unresolved" and r["latency_ms"]["count"] == 0
    rows = apart["requests"]
    h2load_rps = rows / r["measured_s"]
    # Answered: Triton's confirmed share of those rows, the rest UNCONFIRMED failures.
    share = min(v["client_completed"], v["server_success"]) / v["client_completed"]
    assert r["throughput_basis"] == "server" and r["requests"]["ok"] == round(rows * share) < rows
    assert r["throughput_rps"] == pytest.approx(r["requests"]["ok"] / r["measured_s"]) and r["throughput_rps"] < h2load_rps
    triton_failed = sum(r["requests"]["failures"].get(k, 0) for k in ("REJECTED", "SERVER_FAILURE"))
    assert r["requests"]["failures"]["UNCONFIRMED"] == rows - r["requests"]["ok"] - triton_failed > 0
    assert apart["unanswered"] == rows - r["requests"]["ok"]
    # The table and the report say the same, marked, and never print h2load's rate.
    shown = table([r])
    line = shown.splitlines()[2]
    assert f"{r['throughput_rps']:,.0f}*" in line and f"{h2load_rps:,.0f}" not in line and "unverified" in line, shown
    assert line.split()[5:9] == [f"{r['throughput_rps']:,.0f}*", "-", "-", "-"], line  # req/s, p50, p95, p99
    assert "share Triton confirmed" in shown
    cases = tables.cases_table([r])
    assert f"{r['throughput_rps']:,.0f}*" in cases and f"{h2load_rps:,.0f}" not in cases, cases
    assert "never h2load's count" in document._flags([r])
    # The keys this run adds (latency_apart's, throughput_basis) are in the schema doc.
    from tests.test_results_schema import _documented, _paths

    documented = _documented()
    added = [p for p in _paths(r) if p.startswith(("latency_apart", "throughput_basis"))]
    assert len(added) > 10 and sorted(p for p in added if not any(d.match(p) for d in documented)) == []


def test_a_stream_that_ends_early_is_lost_unless_its_requests_are_that_slow():
    import numpy as np

    from axon.engines import h2load_runner

    starts = np.array([0.0, 0.4])  # one stream, 1 s window: the last logged send 0.6 s before its end
    lost = h2load_runner.incomplete_reasons(starts, 0, "", "", 1.0, False, False, longest_request_s=0.001)
    assert lost == ["h2load's streams stopped 0.6 s before the window's end (connection lost)"]
    # 400 ms requests: the last answered one, then one in flight at the end, fill those 0.6 s.
    assert h2load_runner.incomplete_reasons(starts, 0, "", "", 1.0, False, False, longest_request_s=0.4) == []
