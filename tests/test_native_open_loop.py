"""The native engine's open loop (h2load --rps): schedule reconstruction, records, and coordinated omission.

The unit tests feed :func:`native_open.reconstruct` logs from a small simulation of h2load's
pacing (a timer every 10 ms releasing ``round(elapsed * R)`` requests, a stream limit, a server
that may stall); the integration tests run the real h2load against the real embedded Triton.
The stall test SIGSTOPs the server when axon's own progress line says requests are being
measured, so it does not depend on the machine's speed; it asserts only direction and order
of magnitude.
"""

from __future__ import annotations

import contextlib
import gzip
import heapq
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from axon.case import Target, prepare, run_case
from axon.engines import POISSON_ON_PYTHON, native_open
from axon.engines.loadgen import LoadSpec
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from tests.helpers import LineWatcher, assert_clean_error, start_axon, window_under_way

V1 = "particle_classifier_v1"
DATA = Path(__file__).parent / "data" / "h2load"
QUICK = {"duration_s": 2.0, "warmup_s": 0.5, "timeout_s": 5.0, "engine": "native"}
STALL_S = 1.0
WINDOW_WAIT_S = 120
EXIT_WAIT_S = 90


def _need_h2load() -> None:
    if shutil.which("h2load") is None:
        if os.environ.get("CI"):
            pytest.fail("h2load is missing on CI: make setup should have installed nghttp2-client")
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")


# --------------------------------------------------------------------------- a simulated h2load


def _simulate(rate, duration_s=3.0, streams=1000, service_s=0.002, stall=None, starved=None, jitter_s=5e-4, seed=0, tick_s=0.01):
    """Rows (start µs, status, duration µs) as h2load --rps would log them.

    ``stall``: (from, to) s in which the server answers nothing (requests in flight finish at
    ``to`` + service). ``starved``: (from, to) s in which h2load's own timer does not fire.
    ``tick_s``: the timer's period (h2load 1.52's 10 ms; another release may differ).
    """
    rng = np.random.default_rng(seed)
    epoch = 1_700_000_000.0
    grid = np.arange(0.0, duration_s, tick_s)
    ticks = grid + rng.uniform(-jitter_s, jitter_s, len(grid))
    if starved:
        ticks = ticks[(ticks < starved[0]) | (ticks >= starved[1])]
    ticks = np.maximum.accumulate(np.clip(ticks, 0.0, None))
    released, pending, in_flight = 0, 0, 0
    done: list[float] = []  # heap of completion times
    rows = []

    def send(t):
        nonlocal in_flight
        finish = t + service_s
        if stall and t < stall[1] and finish > stall[0]:
            finish = stall[1] + service_s
        rows.append((t, finish))
        heapq.heappush(done, finish)
        in_flight += 1

    for tick in ticks:
        while done and done[0] <= tick:  # a stream closes: a pending request takes it at once
            t = heapq.heappop(done)
            in_flight -= 1
            if pending:
                pending -= 1
                send(t)
        total = round(tick * rate)
        pending += total - released
        released = total
        while pending and in_flight < streams:
            pending -= 1
            send(tick + 2e-6)
    out = np.array([(round((epoch + s) * 1e6), 200, round((f - s) * 1e6)) for s, f in rows], dtype=np.int64)
    return out


def test_a_healthy_run_is_on_schedule():
    sched = native_open.reconstruct(_simulate(2000), 2000, 1000)
    assert len(sched.start) > 5000
    # Release ticks found: lags within the timer's jitter, latency = the server's 2 ms. (A send
    # before its computed tick is timed from the send, as the python engine does: it can only
    # make a latency the real one, never a phantom tick longer.)
    assert np.percentile(sched.lag, 99) < 0.002
    assert np.percentile(sched.latency, 99) < 0.004
    assert not sched.server_held.any() and np.percentile(sched.client_lag, 99) < 0.002
    # Timing from the uniform schedule instead would charge h2load's 10 ms ticks to every request.
    assert np.median(sched.end - sched.uniform) > np.median(sched.latency) + 0.003


def test_a_stalled_server_shows_from_the_due_time_not_from_the_send():
    rate, streams = 1000, 64
    sched = native_open.reconstruct(_simulate(rate, duration_s=5.0, streams=streams, stall=(2.0, 3.0)), rate, streams)
    corrected, uncorrected = sched.latency, sched.end - sched.start
    # Every request due in the stall waits for its end: ~1000 of them over half the stall.
    assert np.count_nonzero(corrected > STALL_S / 2) >= 0.3 * rate * STALL_S
    # From the actual send only the requests holding a stream see it; the rest were sent late and look fast.
    assert np.count_nonzero(uncorrected > STALL_S / 2) <= streams
    assert np.percentile(corrected, 90) > STALL_S / 5 > 5 * np.percentile(uncorrected, 90)
    # The lag is the server's (every stream held): the client is not "behind".
    assert sched.server_held.sum() > 0.3 * rate * STALL_S
    assert np.percentile(sched.client_lag, 99) < 0.005


def test_a_starved_client_is_behind_even_when_the_server_is_fast():
    sched = native_open.reconstruct(_simulate(2000, starved=(1.0, 1.5)), 2000, 1000)
    assert not sched.server_held.any()
    assert np.percentile(sched.client_lag, 99) > 0.1  # its own timer did not fire for 0.5 s


@pytest.mark.parametrize("tick_s", [0.005, 0.010, 0.020])
def test_the_release_tick_is_read_from_the_log(tick_s):
    """An h2load that paces in 5 or 20 ms ticks (not 1.52's 10 ms) is timed from its own ticks."""
    rate, service_s = 2000, 0.002
    rows = _simulate(rate, tick_s=tick_s, service_s=service_s)
    starts = np.sort(rows[:, 0] - rows[0, 0]) / 1e6
    assert native_open.measure_tick(starts, rate) == pytest.approx(tick_s, rel=1e-3)
    sched = native_open.reconstruct(rows, rate, 1000)
    assert sched.tick_measured and sched.tick == pytest.approx(tick_s, rel=1e-3)
    # Timed from the real release ticks: no phantom lag, latency = the server's 2 ms.
    assert np.percentile(sched.lag, 99) < 0.002
    assert np.percentile(sched.latency, 99) < service_s + 0.002


def test_assuming_the_wrong_tick_would_mis_time_every_latency(monkeypatch):
    """What the measured tick prevents: a 20 ms log put on 10 ms ticks charges phantom lag."""
    rows = _simulate(2000, tick_s=0.020)
    monkeypatch.setattr(native_open, "measure_tick", lambda start, rate: None)
    assumed = native_open.reconstruct(rows, 2000, 1000)
    assert not assumed.tick_measured and assumed.tick == native_open.RPS_TICK_S
    assert np.percentile(assumed.lag, 90) > 0.005


def test_a_log_without_a_tick_is_said_and_an_unchecked_h2load_refused():
    rate = 2000
    # Sends at random instants (every stream held, each send follows a freed stream): no tick.
    rng = np.random.default_rng(1)
    starts = np.sort(rng.uniform(0.0, 3.0, 6000))
    assert native_open.measure_tick(starts, rate) is None
    assert native_open.tick_problem("nghttp2/1.52.0", [None]) is None  # a checked release's tick stands in
    assert native_open.tick_problem("nghttp2/1.99.0", [0.02, 0.02]) is None  # measured: any release will do
    problem = native_open.tick_problem("nghttp2/1.99.0", [0.02, None])
    assert problem is not None and "\n" not in problem
    assert "nghttp2/1.99.0" in problem and "pacing is unchecked" in problem and "nghttp2/1.52.0" in problem


def _real_log(rate: int) -> np.ndarray:
    """A real h2load 1.52 --rps log against the embedded Triton (2026-12-07, 2 cores; the 2,000/s one under load 6)."""
    with gzip.open(DATA / f"rps{rate}-nghttp2-1.52.0.log.gz", "rt") as fh:
        return np.loadtxt(fh, dtype=np.int64, delimiter="\t").reshape(-1, 3)


@pytest.mark.parametrize("stretch", [0.5, 1.0, 2.0])
def test_real_logs_read_as_their_tick(stretch):
    """Real 1.52 logs read as 10 ms; the same log with its time axis stretched (an h2load with a 5 or 20 ms tick at half or twice the spacing) reads as that."""
    rows = _real_log(1000)
    t0 = rows[0, 0]
    stretched = np.column_stack([t0 + np.round((rows[:, 0] - t0) * stretch), rows[:, 1], np.round(rows[:, 2] * stretch)]).astype(
        np.int64
    )
    sched = native_open.reconstruct(stretched, 1000 / stretch, 1000)
    assert sched.tick_measured and sched.tick == pytest.approx(0.01 * stretch, rel=0.002)
    assert np.percentile(sched.lag, 90) < 0.1 * sched.tick  # no phantom tick of lag


def test_a_real_log_under_load_is_1_52s_exact_tick():
    sched = native_open.reconstruct(_real_log(2000), 2000, 1000, version="nghttp2/1.52.0")
    assert (
        sched.tick_measured
        and sched.tick == native_open.RPS_TICK_S
        and sched.tick_read == pytest.approx(0.01, rel=native_open.TICK_AGREES)
    )


def test_a_tick_that_agrees_with_the_checked_release_is_its_exact_tick():
    rows = _simulate(2000)
    sched = native_open.reconstruct(rows, 2000, 1000, version="nghttp2/1.52.0")
    assert sched.tick_measured and sched.tick == native_open.RPS_TICK_S and sched.tick_read == pytest.approx(0.01, rel=1e-3)
    info = native_open.tick_info("nghttp2/1.52.0", [sched], 2000)
    assert info["tick_source"].startswith("measured from h2load's log (") and "nghttp2/1.52.0's 10 ms" in info["tick_source"]
    # Another tick is not snapped to it.
    other = native_open.reconstruct(_simulate(2000, tick_s=0.020), 2000, 1000, version="nghttp2/1.52.0")
    assert other.tick == pytest.approx(0.020, rel=1e-3)


def test_the_record_says_which_tick_and_where_it_came_from():
    rate = 2000
    measured = native_open.reconstruct(_simulate(rate, tick_s=0.020), rate, 1000)
    info = native_open.tick_info("nghttp2/1.52.0", [measured], rate)
    assert info["tick_ms"] == pytest.approx(20, rel=1e-3) and info["tick_source"].startswith("measured from h2load's log")
    assert "not the 10 ms nghttp2/1.52.0 was checked with" in info["tick_source"] and "every 20 ms" in info["schedule"]
    blind = native_open.Schedule(*([np.zeros(0)] * 6), tick=0.01, tick_measured=False)
    source = native_open.tick_info("nghttp2/1.52.0", [blind], rate)["tick_source"]
    assert source == "nghttp2/1.52.0's, checked (the log showed no tick)"


def test_open_topology():
    assert native_open.open_topology(4000) == (1, 400, 4000.0)
    clients, streams, per = native_open.open_topology(25_000)
    assert clients == 3 and per == pytest.approx(25_000 / 3) and streams == 834
    assert native_open.open_topology(100, connections=4) == (4, native_open.MIN_STREAMS, 25.0)
    assert native_open.tick_s(50) == pytest.approx(0.02) and native_open.tick_s(5000) == native_open.RPS_TICK_S


def test_poisson_stays_on_python_and_says_so(monkeypatch):
    from axon.engines import base

    monkeypatch.setattr(base, "h2load_version", lambda: "nghttp2/1.52.0")
    case = prepare(LoadSpec(V1, rate=100.0, distribution="poisson"))
    assert case.choice.name == "python" and case.choice.notice == POISSON_ON_PYTHON
    assert prepare(LoadSpec(V1, rate=100.0)).choice.name == "native"


# --------------------------------------------------------------------------- the real h2load and Triton


@pytest.fixture(scope="module")
def on_server(artifacts):
    _need_h2load()
    with EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1]) as server:
        yield server


def _run(server, artifacts, features, **spec):
    target = Target(server.endpoints, "embedded", server.version, "on")
    return run_case(
        LoadSpec(V1, **{**QUICK, **spec}), target, features, artifacts / "models" / V1 / "model.onnx", {"name": "synthetic"}
    )


@pytest.mark.alone  # judges the schedule or a latency the machine must keep
@pytest.mark.server
def test_native_open_loop_record(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], rate=300.0)
    assert r["engine"]["name"] == "native" and r["engine"]["requested"] == "native"
    assert r["load"]["mode"] == "open" and r["load"]["distribution"] == "constant" and r["load"]["rate"] == 300.0
    assert "10 ms" in r["engine"]["schedule"] and r["engine"]["connections"] == 1
    s = r["schedule"]
    assert s["offered_rps"] == 300.0 and 0.9 <= s["sent_rps"] / 300.0 <= 1.1, s
    for key in ("lag_p50_ms", "lag_p99_ms", "lag_max_ms", "client_lag_p99_ms", "server_held", "uncorrected_latency_ms", "behind"):
        assert key in s, key
    assert 0 <= s["lag_p50_ms"] <= s["lag_p99_ms"] <= s["lag_max_ms"]
    # Same honesty as closed loop: the body checked before the run, counts checked against Triton's.
    assert r["correctness"]["enabled"] and r["correctness"]["checked"] == 1
    assert r["verification"]["verified"], r["verification"]
    assert r["complete"] and r["requests"]["failed"] == 0


@pytest.mark.alone  # judges the schedule or a latency the machine must keep
@pytest.mark.server
def test_fan_out_over_processes_is_recorded(on_server, artifacts, validation_rows):
    r = _run(on_server, artifacts, validation_rows[0], rate=400.0, connections=2)
    assert r["engine"]["connections"] == r["engine"]["processes"] == r["load"]["connections"] == 2
    assert r["engine"]["rate_per_connection"] == 200.0 and "2 h2load process" in r["engine"]["fan_out"]
    assert len(r["client"]["cores_per_process"]) == 2
    assert 0.9 <= r["schedule"]["sent_rps"] / 400.0 <= 1.1 and r["verification"]["verified"]


def _bench(server, artifacts, out, *args) -> tuple[subprocess.Popen, LineWatcher]:
    ep = server.endpoints
    proc = start_axon(
        "bench",
        "--url",
        ep.grpc,
        "--metrics-url",
        ep.metrics,
        "--artifacts",
        str(artifacts),
        "--output",
        str(out),
        "--engine",
        "native",
        *args,
    )
    return proc, LineWatcher(proc.stderr)


def _finish(proc: subprocess.Popen, watcher: LineWatcher) -> subprocess.CompletedProcess:
    try:
        stdout = proc.stdout.read()
        proc.wait(timeout=EXIT_WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, watcher.rest())


@pytest.mark.alone  # judges the schedule or a latency the machine must keep
@pytest.mark.server
def test_a_stalled_server_is_not_hidden_by_the_native_open_loop(artifacts, tmp_path):
    """Coordinated omission, tested: SIGSTOP the real server for ~1 s mid-window at a constant rate."""
    _need_h2load()
    rate = 1000
    out = tmp_path / "stall.json"
    server = EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1])
    server.start()
    proc = None
    try:
        # A 6 s window: the stall starts at axon's first progress line inside it (at most ~2 s in).
        proc, watcher = _bench(server, artifacts, out, "--rate", str(rate), "--duration", "6", "--warmup", "0.5")
        watcher.wait_for(window_under_way, timeout_s=WINDOW_WAIT_S)
        stopped = time.monotonic()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            time.sleep(STALL_S)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        stall_s = time.monotonic() - stopped
        done = _finish(proc, watcher)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)  # never tear down a stopped server
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    assert "Traceback" not in done.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["complete"] and run["engine"]["name"] == "native", run["incomplete_reason"]
    corrected, uncorrected = run["latency_ms"], run["schedule"]["uncorrected_latency_ms"]
    stall_ms = stall_s * 1e3
    # From the intended send time the tail shows the stall (the order of magnitude, not the machine's speed) ...
    assert corrected["max"] >= 0.5 * stall_ms and corrected["p99"] >= 0.3 * stall_ms, (corrected, stall_ms)
    assert corrected["p90"] >= 0.05 * stall_ms, corrected
    # ... while the uncorrected view (from the actual send) hides most of it: the requests h2load
    # could not send in the stall went out late and look fast.
    assert uncorrected["p90"] * 5 <= corrected["p90"], (uncorrected, corrected)
    # The sender waited on the server, not on itself: lag recorded, the run not "behind".
    assert run["schedule"]["lag_max_ms"] >= 0.3 * stall_ms and run["schedule"]["server_held"] > 0
    assert not run["schedule"]["behind"], run["schedule"]
    assert run["verification"]["verified"], run["verification"]


@pytest.mark.server
def test_a_dead_server_makes_the_native_open_loop_incomplete(artifacts, tmp_path):
    _need_h2load()
    out = tmp_path / "partial.json"
    server = EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1])
    server.start()
    proc = None
    try:
        proc, watcher = _bench(server, artifacts, out, "--rate", "300", "--duration", "60", "--warmup", "0.5", "--timeout", "3")
        watcher.wait_for(window_under_way, timeout_s=WINDOW_WAIT_S)
        os.killpg(server.pid, signal.SIGKILL)  # a crash: tritonserver and its stubs, no goodbye
        started = time.monotonic()
        done = _finish(proc, watcher)
        elapsed = time.monotonic() - started
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    assert elapsed < 30, "a dead server must not hang the run"
    assert_clean_error(done, "incomplete", "server unavailable")
    (run,) = json.loads(out.read_text())["runs"]
    assert run["complete"] is False and "server unavailable" in run["incomplete_reason"] and not run["passed"]
    assert run["engine"]["name"] == "native" and run["load"]["mode"] == "open"
