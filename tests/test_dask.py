"""Load from many hosts on Dask distributed: real worker processes and real gRPC on loopback.

A LocalCluster of two worker processes plays two hosts against the embedded Triton. These
tests prove the machinery (placement, the two-phase start, clock correction, exact merges,
a lost host), not scale: both "hosts" share this machine's cores with the server.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
from pathlib import Path

import pytest

import axon
from axon.case import Target, run_case
from axon.engines.hosts import clock
from axon.engines.hosts.host import host_shares
from axon.engines.loadgen import LoadSpec
from axon.errors import AxonError
from axon.records import stats
from tests.helpers import assert_clean_error, run_axon

pytestmark = pytest.mark.server
pytest_plugins = ["pytester"]
V1 = "particle_classifier_v1"
# The hosts' window starts must agree within 10% of the warm-up: 1.5 s leaves 150 ms, room for a
# machine busy with other tests (make test runs them in parallel); 0.5 s (50 ms) failed there.
WARMUP_S = 1.5
QUICK = {"duration_s": 1.5, "warmup_s": WARMUP_S, "timeout_s": 5.0, "sample_every": 10, "engine": "python"}
CASE = """
def test_case(axon_bench):
    assert axon_bench("v1", "on", concurrency=4)["requests"]["ok"] > 0
"""
SKEW_S = 0.3  # the test-only clock error of one host: twice the spread limit (10% of the 1.5 s warm-up)
SKEW_TOLERANCE_S = 0.05  # how closely the measured offset must find it (loopback round trips are ~ms)
POISSON_SIGMAS = 4.0


# --------------------------------------------------------------------------- no cluster needed


def test_offset_estimate_keeps_the_shortest_round_trip():
    # Scripted clocks: the remote reads 10 s behind; the slow ping's midpoint is off by 0.5 s.
    local_reads = iter([0.0, 1.0, 2.0, 2.002])
    remote_reads = iter([-9.0, -8.0])  # answered at local 1.0 (not 0.5) and at 2.001
    offset = clock.measure_offset(lambda: next(local_reads), lambda: next(remote_reads), pings=2)
    assert offset.offset_s == pytest.approx(10.001) and offset.uncertainty_s == pytest.approx(0.001)
    assert offset.worst_rtt_s == pytest.approx(1.0)
    assert clock.start_lead_s(offset.worst_rtt_s) == pytest.approx(10.0) and clock.start_lead_s(0.001) == clock.MIN_LEAD_S


def test_alignment_judges_spread_plus_uncertainty():
    limit = clock.spread_limit_s(1.0)
    assert limit == pytest.approx(0.1)
    assert clock.alignment([5.0, 5.05], [0.01, 0.01], 1.0).aligned
    assert not clock.alignment([5.0, 5.09], [0.01, 0.01], 1.0).aligned  # 0.09 + 0.02 > 0.1
    assert clock.spread_limit_s(0.0) == clock.MIN_SPREAD_LIMIT_S


def test_host_shares_split_the_load_and_never_share_a_schedule():
    closed = host_shares(LoadSpec(V1, concurrency=9, seed=3), 2)
    assert [s.concurrency for s in closed] == [5, 4]
    opened = host_shares(LoadSpec(V1, rate=300.0, distribution="poisson", seed=3, processes=2), 3)
    assert [s.rate for s in opened] == [100.0] * 3
    seeds = {s.seed + i for s in opened for i in range(s.processes)}  # worker i draws from seed + i
    assert len(seeds) == 6


def test_engine_choice_on_hosts_follows_the_one_machine_rule():
    from axon.engines.hosts.dask import check_spec, engine_choice

    found = {"tcp://a:1": "nghttp2/1.52.0", "tcp://b:1": "nghttp2/1.52.0"}
    assert engine_choice("auto", "closed", h2load=found).name == "native"
    assert engine_choice("auto", "open", "constant", found).name == "native"
    poisson = engine_choice("auto", "open", "poisson", found)
    assert poisson.name == "python" and "Poisson" in poisson.notice
    assert engine_choice("auto", "closed", h2load=found, has_metrics=False).name == "python"
    lacking = {**found, "tcp://b:1": None}
    fallback = engine_choice("auto", "closed", h2load=lacking)
    assert fallback.name == "python" and "h2load not found on Dask worker tcp://b:1" in fallback.notice
    with pytest.raises(AxonError, match="h2load not found on Dask worker tcp://b:1"):
        engine_choice("native", "closed", h2load=lacking)
    # --connections counts per host and must divide each host's share (9 -> 5 and 4).
    check_spec(LoadSpec(V1, concurrency=8, connections=2), 2, "native")
    with pytest.raises(AxonError, match="must divide each host's share"):
        check_spec(LoadSpec(V1, concurrency=9, connections=2), 2, "native")
    with pytest.raises(AxonError, match="runs on the python engine"):
        check_spec(LoadSpec(V1, concurrency=8, connections=2), 2, "python")


# --------------------------------------------------------------------------- a real cluster


LOCAL_CLUSTER = Path(__file__).resolve().parent.parent / "deploy" / "local.sh"
CLUSTER_START_S = 90.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two hosts from `deploy/local.sh 2`, the recipe users start: every test here tests it too.

    It runs in a session of its own, so that its scheduler, its nannies and their workers all
    go with one signal at the end, whatever happened.
    """
    import subprocess
    import sys
    import time
    from types import SimpleNamespace

    from distributed import Client

    from axon.serving.endpoints import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("dask") / "local.log"
    # The venv's `dask` first on PATH, as for a user who activated it.
    env = {
        **os.environ,
        "AXON_DASK_PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", str(LOCAL_CLUSTER), "2"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    address = f"tcp://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + CLUSTER_START_S
        client = None
        while client is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"deploy/local.sh did not start 2 workers (exit {proc.poll()}): {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError, TimeoutError):
                client = Client(address, timeout=2)
        with client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < 2:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"deploy/local.sh did not start 2 workers (exit {proc.poll()}): {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield SimpleNamespace(scheduler_address=address)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(server_v1):
    """The hosts only send load to it: the session's shared server."""
    return server_v1


def _hosts(cluster, **kw):
    from axon.engines.hosts.dask import DaskHosts

    return DaskHosts(cluster.scheduler_address, 2, **kw)


def _run(hosts, server, artifacts, features, **spec):
    target = Target(server.endpoints, "embedded", server.version, "on")
    return run_case(
        LoadSpec(V1, **{**QUICK, **spec}),
        target,
        features,
        artifacts / "models" / V1 / "model.onnx",
        {"name": "synthetic"},
        hosts=hosts,
    )


def test_closed_loop_merges_exactly_and_matches_triton(cluster, server, artifacts, validation_rows):
    with _hosts(cluster) as hosts:
        # The workers import this checkout's axon, not another install.
        assert {w["axon_path"] for w in hosts.workers.values()} == {str(Path(axon.__file__).parent)}
        r = _run(hosts, server, artifacts, validation_rows[0], concurrency=8)
    assert r["complete"] and r["passed"], (r["incomplete_reason"], r["verdicts"])
    per_host = r["hosts"]["per_host"]
    assert len({h["address"] for h in per_host}) == 2 and [h["concurrency"] for h in per_host] == [4, 4]
    assert all(h["ok"] > 0 and h["attempts"] == 1 and not h["lost"] for h in per_host)
    # merged count = sum of per-host counts, exactly; the histogram is the exact sum of the hosts'.
    ok = r["requests"]["ok"]
    assert r["latency_ms"]["count"] == ok == sum(h["ok"] for h in per_host)
    merged = stats.merge([h["histogram"] for h in per_host])
    assert stats.LatencySummary.of(merged) == stats.LatencySummary.of(stats.decode(r["histogram"]))
    # Triton's success-counter delta over the window: the requests in flight at each edge, and
    # those finished while the opening scrape was under way (0.1 s of throughput), may differ.
    slack = 8 + math.ceil(0.1 * r["throughput_rps"])
    assert abs(r["server_metrics"]["success_count"] - ok) <= slack, (r["server_metrics"]["success_count"], ok, slack)
    sync = r["hosts"]["sync"]
    assert sync["aligned"] and sync["clocks_corrected"] and sync["spread_bound_s"] <= sync["spread_limit_s"]
    assert sync["lead_s"] > sync["worst_rtt_s"]
    assert r["engine"]["hosts"] == 2 and r["engine"]["processes"] == 2 and len(r["client"]["cores_per_process"]) == 2


def test_open_loop_rate_is_poisson_and_lag_histograms_merge(cluster, server, artifacts, validation_rows):
    rate, duration = 300.0, 2.0
    with _hosts(cluster) as hosts:
        r = _run(hosts, server, artifacts, validation_rows[0], rate=rate, distribution="poisson", duration_s=duration)
    assert r["complete"], r["incomplete_reason"]
    per_host = r["hosts"]["per_host"]
    assert [h["rate"] for h in per_host] == [rate / 2] * 2
    # Requests are counted by intended send time: the count is the schedule's, machine speed aside.
    expected = rate * duration
    assert abs(r["requests"]["sent"] - expected) <= POISSON_SIGMAS * math.sqrt(expected), r["requests"]
    lag = stats.merge([h["lag_histogram"] for h in per_host])
    assert lag.get_total_count() == r["requests"]["sent"] == sum(h["sent"] for h in per_host)
    assert stats.LatencySummary.of(lag).p99 == r["schedule"]["lag_p99_ms"]


def test_clock_offset_is_corrected_and_flagged_when_not(cluster, server, artifacts, validation_rows):
    runs = {}
    for corrected in (True, False):
        with _hosts(cluster, correct_clocks=corrected, clock_skew_s={1: SKEW_S}) as hosts:
            runs[corrected] = _run(hosts, server, artifacts, validation_rows[0], concurrency=4, duration_s=1.0)
    for r in runs.values():
        offsets = [h["offset_s"] for h in r["hosts"]["per_host"]]
        assert abs(offsets[0]) < SKEW_TOLERANCE_S and offsets[1] == pytest.approx(SKEW_S, abs=SKEW_TOLERANCE_S)
    good, bad = runs[True], runs[False]
    assert good["complete"] and good["hosts"]["sync"]["aligned"], good["incomplete_reason"]
    assert bad["hosts"]["sync"]["aligned"] is False and bad["complete"] is False
    assert bad["hosts"]["sync"]["window_start_spread_s"] == pytest.approx(SKEW_S, abs=SKEW_TOLERANCE_S)
    assert "window starts spread over" in bad["incomplete_reason"]
    # The misaligned run keeps what it measured.
    assert bad["requests"]["ok"] > 0 and bad["histogram"]


def test_native_closed_loop_on_two_hosts_merges_exactly_and_is_verified(cluster, server, artifacts, validation_rows):
    with _hosts(cluster) as hosts:
        assert all(w["h2load"] for w in hosts.workers.values())  # the probe found each worker's h2load
        r = _run(hosts, server, artifacts, validation_rows[0], concurrency=8, engine="native")
    assert r["complete"] and r["passed"], (r["incomplete_reason"], r["verdicts"])
    assert r["engine"]["name"] == "native" and r["engine"]["hosts"] == 2 and r["engine"]["connections"] == 2
    per_host = r["hosts"]["per_host"]
    assert [h["engine"] for h in per_host] == ["native"] * 2 and [h["concurrency"] for h in per_host] == [4, 4]
    assert [h["streams_per_connection"] for h in per_host] == [4, 4]
    assert all(h["ok"] > 0 and h["attempts"] == 1 and not h["lost"] and len(h["client_cores"]) == 1 for h in per_host)
    # Exact merge: counts add up, the record's histogram is the sum of the hosts' (h2load's logs).
    assert r["latency_ms"]["count"] == r["requests"]["ok"] == sum(h["ok"] for h in per_host)
    merged = stats.merge([h["histogram"] for h in per_host])
    assert stats.LatencySummary.of(merged) == stats.LatencySummary.of(stats.decode(r["histogram"]))
    # Checked against Triton: its success delta between two in-window scrapes against the sum
    # over hosts of the requests completed between those instants (on the scheduler's clock).
    v = r["verification"]
    assert (
        v["verified"] and v["client_completed"] == sum(v["client_completed_per_host"]) and min(v["client_completed_per_host"]) > 0
    )
    assert abs(v["server_success"] + v["server_failures_in_window"] - v["client_completed"]) <= v["allowed_difference"]
    # The slack is the streams in flight at each scrape and the requests finishing while a scrape ran, not a fraction of the count.
    assert v["allowed_difference"] < v["client_completed"] / 2, v
    assert r["hosts"]["sync"]["aligned"] and r["correctness"]["checked"] == 2


@pytest.mark.alone  # judges the schedule or a latency the machine must keep
def test_native_open_loop_constant_rate_on_two_hosts(cluster, server, artifacts, validation_rows):
    rate, duration = 400.0, 2.0
    with _hosts(cluster) as hosts:
        r = _run(hosts, server, artifacts, validation_rows[0], rate=rate, duration_s=duration, engine="native")
    assert r["complete"] and r["passed"], (r["incomplete_reason"], r["verdicts"])
    assert (
        r["engine"]["name"] == "native"
        and r["engine"]["rate_per_connection"] == rate / 2
        and "2 hosts x 1 h2load" in r["engine"]["fan_out"]
    )
    per_host = r["hosts"]["per_host"]
    assert [h["rate"] for h in per_host] == [rate / 2] * 2 and [h["engine"] for h in per_host] == ["native"] * 2
    # Constant spacing: each host's h2load releases its share in 10 ms ticks; the window holds
    # the schedule's count, give or take the ticks at its edges, whatever the machine's speed.
    expected = rate * duration
    assert abs(r["requests"]["sent"] - expected) <= 0.05 * expected, r["requests"]
    lag = stats.merge([h["lag_histogram"] for h in per_host])
    assert lag.get_total_count() == r["requests"]["sent"] == sum(h["sent"] for h in per_host)
    assert r["verification"]["verified"], r["verification"]
    assert r["schedule"]["behind"] is False and r["schedule"]["uncorrected_latency_ms"]


def test_native_refused_where_a_worker_lacks_h2load(server, artifacts, tmp_path):
    import dask
    from distributed import LocalCluster

    from axon.case import prepare
    from axon.engines.hosts.dask import DaskHosts

    empty = tmp_path / "bin"
    empty.mkdir()
    # A worker whose PATH has no h2load (its Python is started by absolute path, so it runs).
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0", env={"PATH": str(empty)}
        ) as bare,
    ):
        with DaskHosts(bare.scheduler_address, 1) as hosts:
            (address,) = hosts.addresses
            assert hosts.workers[address]["h2load"] is None
            with pytest.raises(AxonError, match=f"h2load not found on Dask worker {address}"):
                prepare(LoadSpec(V1, concurrency=4, engine="native"), hosts=hosts)
            auto = prepare(LoadSpec(V1, concurrency=4), hosts=hosts)
            assert auto.choice.name == "python" and "h2load not found on Dask worker" in auto.choice.notice
        # Through the CLI: one line, exit 2, before the server is touched.
        ep = server.endpoints
        done = run_axon(
            "bench",
            "--url",
            ep.grpc,
            "--metrics-url",
            ep.metrics,
            "--artifacts",
            str(artifacts),
            "--concurrency",
            "4",
            "--dask",
            bare.scheduler_address,
            "--engine",
            "native",
        )
        assert_clean_error(done, f"h2load not found on Dask worker {address}")


def test_cli_many_hosts_and_its_bad_input(cluster, server, artifacts, tmp_path):
    ep = server.endpoints
    base = (
        "bench",
        "--url",
        ep.grpc,
        "--metrics-url",
        ep.metrics,
        "--artifacts",
        str(artifacts),
        "--duration",
        "1",
        "--warmup",
        str(WARMUP_S),
    )
    out = tmp_path / "hosts.json"
    done = run_axon(
        *base,
        "--concurrency",
        "8",
        "--dask",
        cluster.scheduler_address,
        "--hosts",
        "2",
        "--engine",
        "native",
        "--output",
        str(out),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["hosts"]["count"] == 2 and run["engine"]["placement"] == "dask" and run["complete"] and run["passed"]
    assert run["engine"]["name"] == "native" and run["verification"]["verified"]
    assert "2 hosts via" in done.stderr and "host 1 " in done.stderr
    assert_clean_error(run_axon(*base, "--dask", "tcp://127.0.0.1:9"), "cannot reach the Dask scheduler")
    assert_clean_error(
        run_axon(*base, "--dask", cluster.scheduler_address, "--hosts", "3"),
        "--hosts 3 but the Dask scheduler",
        "has 2 worker(s)",
    )
    assert_clean_error(run_axon(*base, "--hosts", "2"), "give --dask")
    assert_clean_error(
        run_axon(*base, "--dask", cluster.scheduler_address, "--engine", "native", "--rate", "100", "--poisson"),
        "no Poisson mode",
    )
    assert_clean_error(run_axon(*base, "--dask", cluster.scheduler_address, "--requests", "100"), "not --requests")


@pytest.mark.parametrize("engine", ["python", "native"])
def test_cli_many_hosts_carry_a_users_several_input_model(cluster, engine, tmp_path):
    # The coordinator reads the file's signature, builds the bodies and onnxruntime's answers once;
    # the hosts get them (python: every body and answer; native: the one body, checked before the run).
    from tests import onnx_models

    model = onnx_models.tagger(tmp_path / "tagger.onnx")
    out = tmp_path / "onnx-hosts.json"
    done = run_axon(
        "bench",
        "--onnx",
        str(model),
        "--shape",
        "points:8,3",
        "--shape",
        "mask:8",
        "--dask",
        cluster.scheduler_address,
        "--hosts",
        "2",
        "--engine",
        engine,
        "--concurrency",
        "4",
        "--duration",
        "1",
        "--warmup",
        str(WARMUP_S),
        "--output",
        str(out),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["complete"] and run["passed"] and run["model"] == "tagger", (run["incomplete_reason"], run["verdicts"])
    assert (
        run["engine"]["name"] == engine
        and run["hosts"]["count"] == 2
        and all(h["ok"] > 0 and h["engine"] == engine for h in run["hosts"]["per_host"])
    )
    assert [(t["name"], t["datatype"], t["shape"]) for t in run["signature"]["inputs"]] == [
        ("points", "FP32", [1, 8, 3]),
        ("mask", "BOOL", [1, 8]),
        ("ids", "INT64", [1, 4]),
    ]
    assert run["correctness"]["enabled"] and run["correctness"]["checked"] > 0 and run["correctness"]["mismatches"] == 0
    if engine == "native":
        assert run["verification"]["verified"], run["verification"]


def test_a_path_on_two_hosts_merges_exactly_and_triton_counts_every_call(cluster, server, artifacts, tmp_path):
    # Each host runs the event engine on its share; the coordinator reads Triton's per-model
    # counters before any host's first event and after every host's last.
    from tests.test_paths import TWO_STEPS

    path = tmp_path / "path.toml"
    path.write_text(TWO_STEPS)
    ep = server.endpoints
    out = tmp_path / "path-hosts.json"
    done = run_axon(
        "bench",
        "--url",
        ep.grpc,
        "--metrics-url",
        ep.metrics,
        "--artifacts",
        str(artifacts),
        "--path",
        str(path),
        "--dask",
        cluster.scheduler_address,
        "--hosts",
        "2",
        "--concurrency",
        "4",
        "--duration",
        "1.5",
        "--warmup",
        str(WARMUP_S),
        "--output",
        str(out),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 hosts via" in done.stderr and "host 1 " in done.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["complete"] and run["passed"], (run["incomplete_reason"], run["verdicts"])
    assert run["engine"]["name"] == "events" and run["engine"]["hosts"] == 2 and run["engine"]["placement"] == "dask"
    per_host = run["hosts"]["per_host"]
    assert [h["concurrency"] for h in per_host] == [2, 2] and all(
        h["engine"] == "events" and h["ok"] > 0 and h["attempts"] == 1 for h in per_host
    )
    # Events: counts add up over hosts and the event histogram is the exact sum of the hosts'.
    assert run["latency_ms"]["count"] == run["requests"]["ok"] == sum(h["ok"] for h in per_host)
    merged = stats.merge([h["histogram"] for h in per_host])
    assert stats.LatencySummary.of(merged) == stats.LatencySummary.of(stats.decode(run["histogram"]))
    # Calls: each model's answered calls over the whole run, summed over hosts, are Triton's count.
    section = run["path"]
    assert section["verification"]["verified"], section["verification"]
    events = section["events_ok_whole_run"]
    for model, per_event in {"particle_classifier_v1": 2, "particle_classifier_v2": 1}.items():
        entry = section["models"][model]
        assert entry["calls_ok"] == per_event * events == entry["server"]["success_count"], (model, entry)
    assert sum(c["ok"] for c in section["calls"] if c["step"] == 1) == run["requests"]["sent"]
    assert run["hosts"]["sync"]["aligned"] and run["correctness"]["enabled"] and run["correctness"]["mismatches"] == 0


def test_pytest_plugin_runs_cases_on_the_hosts(cluster, server, artifacts, pytester, monkeypatch):
    # The inner pytest must load this checkout's plugin, not an installed one.
    monkeypatch.setenv("PYTHONPATH", str(Path(axon.__file__).parent.parent))
    pytester.makepyfile(CASE)
    ep = server.endpoints
    out = pytester.path / "out.json"
    args = [
        "--triton=external",
        f"--triton-url={ep.grpc}",
        f"--triton-metrics-url={ep.metrics}",
        "--axon-artifacts",
        str(artifacts),
    ]
    args += ["--axon-duration", "1", "--axon-warmup", str(WARMUP_S), "-p", "no:cacheprovider", f"--benchmark-json={out}"]
    result = pytester.runpytest_subprocess(*args, "--axon-dask", cluster.scheduler_address, "--axon-hosts", "2")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    (bench,) = json.loads(out.read_text())["benchmarks"]
    record = bench["extra_info"]["axon"]
    assert record["hosts"]["count"] == 2 and record["complete"] and bench["stats"]["rounds"] == record["requests"]["ok"]
    bad = pytester.runpytest_subprocess(*args, "--axon-dask", "tcp://127.0.0.1:9")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "cannot reach the Dask scheduler" in bad.stdout.str() + bad.stderr.str()


def test_lost_host_gives_an_incomplete_result_and_is_never_rerun(cluster, server, artifacts, validation_rows):
    import psutil
    from distributed import Queue

    killed: dict = {}

    def on_event(host: int, kind: str) -> None:
        # Kill host 1's Dask worker once that host says its window is open (requests measured).
        if host == 1 and kind == "window" and not killed:
            pid = hosts.workers[hosts.addresses[1]]["pid"]
            killed["children"] = psutil.Process(pid).children(recursive=True)
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid

    with _hosts(cluster, on_event=on_event) as hosts:
        r = _run(hosts, server, artifacts, validation_rows[0], concurrency=4, duration_s=4.0)
        assert killed, "host 1 never reported its window open"
        lost, kept = r["hosts"]["per_host"][1], r["hosts"]["per_host"][0]
        assert r["complete"] is False and r["passed"] is False
        assert "host 1" in r["incomplete_reason"] and "lost" in r["incomplete_reason"]
        assert lost["lost"] and lost["attempts"] == 1 and lost["histogram"] is None and lost["last_progress_sent"] >= 0
        # The partial result: the surviving host's requests, its histogram kept whole.
        assert kept["ok"] > 0 and r["requests"]["ok"] == kept["ok"] == r["latency_ms"]["count"]
        # The nanny restarts the worker (a signal: the cluster is whole again); the task never runs again.
        hosts.client.wait_for_workers(2, timeout=60)
        events = Queue(f"{r['hosts']['sync']['run_id']}-events", client=hosts.client).get(batch=True)
        assert not [e for e in events if e["kind"] in ("started", "ready")], events
    # The lost host's load processes died with it: no orphan keeps loading the server.
    _, alive = psutil.wait_procs(killed["children"], timeout=30)
    assert not alive, alive


def test_dask_hosts_refuses_more_hosts_than_workers(cluster):
    from axon.engines.hosts.dask import DaskHosts

    with pytest.raises(AxonError, match="has 2 worker"):
        DaskHosts(cluster.scheduler_address, 5)


def test_native_lost_host_keeps_the_other_and_its_h2load_ends_with_its_window(cluster, server, artifacts, validation_rows):
    import psutil

    killed: dict = {}

    def on_event(host: int, kind: str) -> None:
        # Kill host 1's Dask worker once its h2load log shows main-phase rows.
        if host == 1 and kind == "window" and not killed:
            pid = hosts.workers[hosts.addresses[1]]["pid"]
            killed["children"] = psutil.Process(pid).children(recursive=True)
            killed["h2load"] = [p for p in killed["children"] if p.name() == "h2load"]  # named while alive
            os.kill(pid, signal.SIGKILL)

    duration = 3.0
    try:
        with _hosts(cluster, on_event=on_event) as hosts:
            r = _run(hosts, server, artifacts, validation_rows[0], concurrency=4, duration_s=duration, engine="native")
            assert killed, "host 1 never reported its window open"
            hosts.client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker for the next tests
        lost, kept = r["hosts"]["per_host"][1], r["hosts"]["per_host"][0]
        assert r["complete"] is False and r["passed"] is False and "host 1" in r["incomplete_reason"]
        assert lost["lost"] and lost["attempts"] == 1 and lost["histogram"] is None
        assert kept["ok"] > 0 and kept["engine"] == "native" and r["requests"]["ok"] == kept["ok"] == r["latency_ms"]["count"]
        # The lost host's h2load is not tied to its parent: it stops when its -D window ends.
        assert killed["h2load"]
        _, alive = psutil.wait_procs(killed["h2load"], timeout=duration + 30)
        assert not alive, alive
    finally:
        for p in killed.get("children", []):  # whatever failed above, nothing this test caused outlives it
            with contextlib.suppress(psutil.Error):
                p.kill()
