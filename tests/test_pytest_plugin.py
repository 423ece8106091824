"""The pytest plugin, driven through pytester as a user's suite would use it."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

CASE = """
def test_case(axon_bench):
    record = axon_bench("v1", "on", concurrency=2)
    assert record["requests"]["ok"] > 0
"""


def _args(artifacts, *extra, server=None):
    """The plugin's options; with ``server``, the session's shared Triton as an external one (no start per run)."""
    shared = []
    if server is not None:
        ep = server.endpoints
        shared = ["--triton=external", "--triton-url", ep.grpc, "--triton-metrics-url", ep.metrics, "--triton-batching", "on"]
    return [
        "--axon-artifacts",
        str(artifacts),
        "--axon-duration",
        "1",
        "--axon-warmup",
        "0.2",
        "-p",
        "no:cacheprovider",
        *shared,
        *extra,
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--triton=external"], "--triton=external needs --triton-url"),
        (["--axon-duration", "0"], "--axon-duration must be > 0"),
        (["--axon-processes", "many"], "--axon-processes must be a whole number"),
        (["--triton=tpu"], "invalid choice"),
        (["--axon-hosts", "2"], "--axon-hosts must be >= 1 and goes with --axon-dask"),
    ],
)
def test_option_errors(pytester, args, message):
    pytester.makepyfile(CASE)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


@pytest.mark.server
def test_budget_breach_fails_with_the_slo_message_and_records_everything(pytester, artifacts):
    pytester.makepyfile(CASE)
    pytester.makefile(".toml", slo='[[slo]]\nname = "impossible"\nbatching = "on"\np50_ms = 0.001\n')
    out = pytester.path / "out.json"
    result = pytester.runpytest_subprocess(*_args(artifacts, "--axon-slo-file", "slo.toml", f"--benchmark-json={out}"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.re_match_lines(
        [r".*p50 \d+\.\d\d ms > budget 0\.00 ms \(particle_classifier_v1, batching on, c=2\) \[impossible\].*"]
    )
    (bench,) = json.loads(out.read_text())["benchmarks"]
    record = bench["extra_info"]["axon"]
    # pytest-benchmark's statistics are the per-request latencies of the run.
    assert bench["stats"]["rounds"] == record["requests"]["ok"] > 0
    assert bench["stats"]["median"] * 1e3 == pytest.approx(record["latency_ms"]["p50"], rel=0.02)
    assert bench["stats"]["min"] * 1e3 == pytest.approx(record["latency_ms"]["min"], rel=0.01)
    assert record["server"]["backend"] == "embedded" and record["batching"] == "on" and record["dataset"]["name"] == "synthetic"


@pytest.mark.server
def test_uncovered_case_runs_and_records(pytester, artifacts, server_v1):
    pytester.makepyfile(CASE)
    pytester.makefile(".toml", slo='[[slo]]\nbatching = "off"\np50_ms = 0.001\n')
    result = pytester.runpytest_subprocess(*_args(artifacts, "--axon-slo-file", "slo.toml", "-rA", server=server_v1))
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*no SLO budget covers particle_classifier_v1, batching on, c=2; recorded only*"])


@pytest.mark.server
def test_client_bound_runs_are_marked_whether_they_pass_or_fail(pytester, artifacts, server_v1):
    pytester.makepyfile(CASE)
    pytester.makefile(".toml", slo='[[slo]]\nname = "impossible"\np50_ms = 0.001\n', ok="[[slo]]\np99_ms = 5000\n")
    failing = pytester.runpytest_subprocess(
        *_args(artifacts, "--axon-slo-file", "slo.toml", "--axon-client-bound-cores", "0.0001", server=server_v1)
    )
    failing.stdout.fnmatch_lines(["*budget 0.00 ms*[client-bound run]*", "*client-bound: a load-generator process used*"])
    passing = pytester.runpytest_subprocess(
        *_args(artifacts, "--axon-slo-file", "ok.toml", "--axon-client-bound-cores", "0.0001", server=server_v1)
    )
    assert passing.ret == pytest.ExitCode.OK
    passing.stdout.fnmatch_lines(["*client-bound: a load-generator process used*particle_classifier_v1, batching on, c=2*"])


@pytest.mark.server
def test_terminal_shows_real_throughput_engine_and_repeats(pytester, artifacts, server_v1):
    pytester.makepyfile(CASE)
    out = pytester.path / "out.json"
    result = pytester.runpytest_subprocess(*_args(artifacts, "--axon-repeat", "2", f"--benchmark-json={out}", server=server_v1))
    assert result.ret == pytest.ExitCode.OK
    (bench,) = json.loads(out.read_text())["benchmarks"]
    record = bench["extra_info"]["axon"]
    assert len(record["repeats"]) == 2 and [r["repeat"]["index"] for r in record["repeats"]] == [0, 1]
    assert record["requests"]["ok"] == sum(r["requests"]["ok"] for r in record["repeats"]) == bench["stats"]["rounds"]
    engine = record["engine"]["name"]
    # The axon section: the case's real req/s as median [min-max] over repeats, the engine, the verdict.
    result.stdout.re_match_lines(
        [
            r"test_case\s+[\d,]+ \[[\d,]+–[\d,]+\]\s+.*\s" + engine + r"\s+ok$",
            r"1 case\(s\): 0 failing; client-bound: 0 of 1 cases",
        ]
    )


@pytest.mark.server
def test_benchmark_compare_fail_judges_request_latency(pytester, artifacts, server_v1):
    """pytest-benchmark's own gate reads these records: its columns are request latencies."""
    pytester.makepyfile(CASE)
    storage = pytester.path / "history"
    saved = pytester.runpytest_subprocess(
        *_args(artifacts, "--benchmark-autosave", f"--benchmark-storage=file://{storage}", server=server_v1)
    )
    assert saved.ret == pytest.ExitCode.OK
    (path,) = storage.rglob("0001_*.json")
    lenient = pytester.runpytest_subprocess(
        *_args(
            artifacts,
            f"--benchmark-storage=file://{storage}",
            "--benchmark-compare=0001",
            "--benchmark-compare-fail=median:1000%",
            server=server_v1,
        )
    )
    assert lenient.ret == pytest.ExitCode.OK
    # Make the saved run 100x faster than any real one: the new run's median request latency regressed.
    payload = json.loads(path.read_text())
    stats = payload["benchmarks"][0]["stats"]
    for key in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev"):
        stats[key] = stats[key] / 100
    path.write_text(json.dumps(payload))
    strict = pytester.runpytest_subprocess(
        *_args(
            artifacts,
            f"--benchmark-storage=file://{storage}",
            "--benchmark-compare=0001",
            "--benchmark-compare-fail=median:10%",
            server=server_v1,
        )
    )
    assert strict.ret != pytest.ExitCode.OK
    # pytest-benchmark reports it by raising PerformanceRegression from its terminal summary.
    output = strict.stdout.str() + strict.stderr.str()
    assert "Performance has regressed" in output and "median" in output


def test_a_run_axon_fails_fails_the_case_with_the_runs_own_verdict(pytester, artifacts, tmp_path):
    """pytest must fail what `axon bench` fails. A queue bound of 1 under the native engine's
    8 streams: h2load sees HTTP 200 for every rejection, Triton does not count them, so axon
    marks the run unverified. No SLO budget is broken (the budgets are lenient): the case fails
    on the run's own verdict, and the terminal line names it."""
    import shutil

    from axon.names import served_name
    from axon.offline.repository import with_queue_policy
    from axon.serving.backends import embedded_repository
    from axon.serving.embedded import EmbeddedServer

    if shutil.which("h2load") is None:
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")
    pytester.makepyfile(
        """
def test_case(axon_bench):
    axon_bench("v1", "on", concurrency=8)
"""
    )
    pytester.makefile(".toml", slo="[[slo]]\np99_ms = 60000\n")
    repo = with_queue_policy(embedded_repository(artifacts, "on"), tmp_path / "repo", 1, 0)
    with EmbeddedServer(repo, models=[served_name("v1")]) as server:
        result = pytester.runpytest_subprocess(
            *_args(artifacts, "--axon-engine", "native", "--axon-slo-file", "slo.toml", server=server)
        )
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert "unverified: Triton counted" in output
    summary = [line for line in output.splitlines() if line.startswith("test_case") and " native " in line]
    assert summary and "FAILED: unverified" in summary[0], output
