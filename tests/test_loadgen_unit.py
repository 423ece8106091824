"""Scheduling and statistics on a fake clock against a scripted server (no network)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from axon.engines.loadgen import OK, TIMEOUT, UNAVAILABLE, LoadSpec, Outcome, Recorder, closed_loop, open_loop, split_evenly
from axon.engines.schedule import arrival_offsets
from axon.errors import AxonError
from axon.records import stats
from tests.fakeclock import run_virtual


def test_poisson_interarrivals_have_the_right_mean_and_variance():
    rate = 2000.0
    gaps = np.diff(arrival_offsets(rate, 50.0, "poisson", seed=7))
    assert len(gaps) == pytest.approx(100_000, rel=0.02)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.01)
    assert gaps.var() == pytest.approx(1 / rate**2, rel=0.03)  # exponential: variance = mean^2
    np.testing.assert_array_equal(arrival_offsets(rate, 1.0, "poisson", seed=7), arrival_offsets(rate, 1.0, "poisson", seed=7))


def test_constant_arrivals_are_evenly_spaced():
    times = arrival_offsets(100.0, 2.0, "constant")
    assert len(times) == 200
    np.testing.assert_allclose(np.diff(times), 0.01)


def test_bad_schedules():
    with pytest.raises(ValueError):
        arrival_offsets(0, 1.0)
    with pytest.raises(ValueError):
        arrival_offsets(10, 1.0, "bursty")


class ScriptedServer:
    """Answers in 1 ms, except that it freezes from t=1 s to t=2 s (a GC pause, say)."""

    def __init__(self, clock, service_s=0.001, stall=(1.0, 2.0)):
        self.clock, self.service_s, self.stall = clock, service_s, stall

    async def __call__(self, i):
        now = self.clock()
        wait = self.service_s
        if self.stall[0] <= now < self.stall[1]:
            wait += self.stall[1] - now
        await asyncio.sleep(wait)
        return Outcome(OK, b"")


def _open(rate, duration=3.0):
    async def go(clock):
        rec = Recorder(0.0, duration)
        await open_loop(ScriptedServer(clock), 10, arrival_offsets(rate, duration), rec, clock, asyncio.Event(), t0=0.0)
        return rec

    return run_virtual(go)


def _closed(concurrency, duration=3.0):
    async def go(clock):
        rec = Recorder(0.0, duration)
        await closed_loop(ScriptedServer(clock), 10, concurrency, rec, clock, asyncio.Event())
        return rec

    return run_virtual(go)


def test_open_loop_counts_the_stall_for_every_request_it_delayed():
    """Coordinated omission: the open loop times from the intended send time."""
    rec = _open(rate=1000)
    summary = stats.LatencySummary.of(rec.latency)
    assert rec.sent == 3000 and rec.ok == 3000
    # A third of the intended sends fell inside the 1 s stall; they waited up to 1 s.
    assert summary.p50 == pytest.approx(1.0, abs=0.01)  # ms
    assert summary.p99 > 900  # ms
    assert summary.max == pytest.approx(1001, rel=0.01)
    # Mean over the stall's requests: ~500 ms for 1000 of 3000 requests.
    assert summary.mean == pytest.approx((1000 * 500.5 + 2000 * 1.0) / 3000, rel=0.02)


def test_closed_loop_hides_the_stall_behind_one_request():
    """The same server measured closed-loop: only the one request in flight saw the pause."""
    rec = _closed(concurrency=1)
    summary = stats.LatencySummary.of(rec.latency)
    assert summary.p99 == pytest.approx(1.0, abs=0.01)
    assert summary.max == pytest.approx(1000, rel=0.01)
    assert stats.LatencySummary.of(rec.latency).count == rec.ok


def test_window_counts_only_requests_sent_inside_it():
    async def go(clock):
        rec = Recorder(1.0, 2.0)  # warm-up 1 s, window 1 s
        await closed_loop(ScriptedServer(clock, stall=(9, 9)), 10, 4, rec, clock, asyncio.Event())
        return rec

    rec = run_virtual(go)
    # 4 in flight at 1 ms each: 4000 sends in the 1 s window.
    assert rec.sent == pytest.approx(4000, abs=4)


def test_errors_are_counted_by_code_and_a_dead_server_stops_the_run():
    async def dead(i):
        await asyncio.sleep(0.0001)
        return Outcome(UNAVAILABLE)

    async def go(clock):
        rec = Recorder(0.0, 1000.0)
        await closed_loop(dead, 10, 8, rec, clock, asyncio.Event())
        return rec

    rec = run_virtual(go)
    assert rec.server_gone and rec.ok == 0
    assert rec.failures == {UNAVAILABLE: rec.sent} and rec.sent < 100


def test_timeouts_are_failures_not_latencies():
    rec = Recorder(0.0, 10.0)
    rec.record(0, 1.0, 1.5, Outcome(TIMEOUT))
    rec.record(0, 1.0, 1.002, Outcome(OK, b""))
    assert rec.sent == 2 and rec.ok == 1 and rec.failures[TIMEOUT] == 1
    assert rec.latency.get_total_count() == 1


def test_correctness_sampling():
    checks = []

    def checker(i, response):
        checks.append(i)
        return i != 3

    rec = Recorder(0.0, 10.0, checker=checker, sample_every=2)
    for i in range(8):
        rec.record(i, 1.0, 1.001, Outcome(OK, b""))
    assert checks == [0, 2, 4, 6] and rec.checked == 4 and rec.mismatches == 0
    rec.record(3, 1.0, 1.001, Outcome(OK, b""))
    assert rec.checked == 5 and rec.mismatches == 1


def test_histograms_merge_exactly():
    a, b, both = stats.new_histogram(), stats.new_histogram(), stats.new_histogram()
    rng = np.random.default_rng(0)
    for value in rng.exponential(0.002, 5000):
        stats.record_seconds(a, value)
        stats.record_seconds(both, value)
    for value in rng.exponential(0.010, 5000):
        stats.record_seconds(b, value)
        stats.record_seconds(both, value)
    merged = stats.merge([stats.encode(a), stats.encode(b)])
    assert stats.LatencySummary.of(merged) == stats.LatencySummary.of(both)


def test_spec_validation():
    with pytest.raises(AxonError, match="concurrency"):
        LoadSpec("m", concurrency=0).validate()
    with pytest.raises(AxonError, match="concurrency"):
        LoadSpec("m", concurrency=2000).validate()
    with pytest.raises(AxonError, match="rate"):
        LoadSpec("m", rate=-1).validate()
    with pytest.raises(AxonError, match="duration"):
        LoadSpec("m", concurrency=1, duration_s=0).validate()
    with pytest.raises(AxonError, match="exactly one"):
        LoadSpec("m").validate()
    assert split_evenly(10, 3) == [4, 3, 3]


def test_auto_processes():
    # On small machines the client shares cores with the server: one process (measured faster).
    assert LoadSpec("m", concurrency=64, processes="auto").resolved(cores=2).processes == 1
    assert LoadSpec("m", rate=5000.0, processes="auto").resolved(cores=4).processes == 1
    assert LoadSpec("m", concurrency=64, processes="auto").resolved(cores=16).processes == 4
    assert LoadSpec("m", concurrency=64, processes="auto").resolved(cores=8).processes == 2
    assert LoadSpec("m", concurrency=1, processes="auto").resolved(cores=64).processes == 1
    assert LoadSpec("m", concurrency=8, processes=3).resolved(cores=64).processes == 3
    with pytest.raises(AxonError, match="processes"):
        LoadSpec("m", concurrency=2, processes=0).validate()
    with pytest.raises(AxonError, match="need concurrency"):
        LoadSpec("m", concurrency=2, processes=3).validate()


def test_open_loop_times_from_the_real_send_when_woken_early(monkeypatch):
    """uvloop's timers are 1 ms coarse: a sender woken early must not report less than the service time."""
    real_sleep = asyncio.sleep

    async def server(i):
        await real_sleep(0.002)
        return Outcome(OK, b"")

    async def wakes_early(delay, *args):
        await real_sleep(max(delay - 0.001, 0.0), *args)

    async def go(clock):
        rec = Recorder(0.0, 1.0)
        monkeypatch.setattr(asyncio, "sleep", wakes_early)
        try:
            await open_loop(server, 1, [0.1, 0.2, 0.3], rec, clock, asyncio.Event(), t0=0.0)
        finally:
            monkeypatch.setattr(asyncio, "sleep", real_sleep)
        return rec

    rec = run_virtual(go)
    summary = stats.LatencySummary.of(rec.latency)
    assert rec.ok == 3 and summary.min == pytest.approx(2.0, abs=0.01) and summary.max == pytest.approx(2.0, abs=0.01)
