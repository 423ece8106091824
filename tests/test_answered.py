"""One meaning for latency and for answered requests, whatever the engine (axon.records.answered).

Unit tests on counts: the native engine's count check (``verification``) as the engine writes
it, and histograms of known values. The real queue-bound server is in test_native_engine.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from axon.engines.loadgen import UNAVAILABLE, Outcome, Recorder
from axon.records import answered, repeats, stats

AGREED = {"verified": True, "client_completed": 1000, "server_success": 1000, "server_failures_in_window": 0}
# Seen 2026-12-07 with a queue of 1 under 8 streams (Triton 2.51): 6 answers, 16,291 h2load completions.
QUEUE_BOUND = {
    "verified": False,
    "client_completed": 16_291,
    "server_success": 6,
    "server_failures_in_window": 0,
    "interval_s": 1.5,
}


def _histogram(values_us) -> object:
    h = stats.new_histogram()
    for v in values_us:
        h.record_value(int(v))
    return h


def test_an_engine_that_sees_each_status_is_taken_at_its_word():
    v = answered.vouch(None, 90, {"REJECTED": 10}, rows=90, complete=True)
    assert v == answered.Vouched(90, {"REJECTED": 10}, answered.CLIENT, True)


def test_agreeing_counts_with_no_failure_vouch_for_every_row():
    v = answered.vouch(AGREED, 5000, {}, rows=5000, complete=True)
    assert v == answered.Vouched(5000, {}, answered.CLIENT, True)


def test_failures_triton_counted_leave_the_rows_unresolved():
    """The count is right (Triton labels them), but which rows were rejected h2load can't say."""
    v = answered.vouch({**AGREED, "server_failures_in_window": 40}, 4960, {"REJECTED": 40}, rows=5000, complete=True)
    assert (v.ok, v.basis, v.latency_resolved) == (4960, answered.CLIENT, False)


def test_counts_that_disagree_show_what_triton_confirms():
    rows, ok = 21_940, 21_940
    v = answered.vouch(QUEUE_BOUND, ok, {}, rows=rows, complete=True)
    assert v.basis == answered.SERVER and not v.latency_resolved
    assert v.ok == round(rows * 6 / 16_291) == 8
    assert v.failures == {answered.UNCONFIRMED: ok - 8}
    assert answered.throughput(v, 2.0) == pytest.approx(4.0)
    # Triton counting more than h2load completed (another client, say) confirms at most h2load's own.
    more = answered.vouch({**QUEUE_BOUND, "server_success": 20_000}, ok, {}, rows=rows, complete=True)
    assert more.ok == ok and answered.UNCONFIRMED not in more.failures and more.basis == answered.SERVER
    assert more.latency_resolved  # no row is left that Triton did not answer
    assert not answered.vouch(
        {**QUEUE_BOUND, "server_success": 20_000, "server_failures_in_window": 3}, ok, {}, rows=rows, complete=True
    ).latency_resolved


def test_no_counts_confirm_nothing_unless_the_run_was_cut_short():
    check_failed = {"verified": False, "reason": "the window was too short or ended before both scrapes"}
    v = answered.vouch(check_failed, 300, {}, rows=300, complete=True)
    assert (v.ok, v.failures, v.basis) == (0, {answered.UNCONFIRMED: 300}, answered.NONE)
    assert math.isnan(answered.throughput(v, 1.0))
    # Counters that went backwards (the model unloaded mid-run) confirm nothing either.
    reset = answered.vouch({**QUEUE_BOUND, "server_success": -5000}, 300, {}, rows=300, complete=True)
    assert (reset.ok, reset.basis) == (0, answered.NONE)
    # Cut short: the incomplete reason speaks for the run, its counts stay h2load's.
    assert answered.vouch(check_failed, 300, {}, rows=300, complete=False).basis == answered.CLIENT


def test_the_bounds_hold_the_answered_percentiles_whichever_rows_were_rejected():
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=7.0, sigma=0.8, size=4000).astype(np.int64) + 100  # µs
    rejected_n = 300
    apart = answered.unresolved(_histogram(values), rejected_n)
    assert apart["requests"] == 4000 and apart["unanswered"] == rejected_n and apart["of"] == "http_200_unresolved"
    bounds = apart["answered_bounds_ms"]
    # Whichever 300 rows were the rejections (the fastest, the slowest, any), the answered
    # requests' percentiles lie inside the bounds (to the histogram's 3 digits).
    for pick in (np.argsort(values)[:rejected_n], np.argsort(values)[-rejected_n:], rng.choice(4000, rejected_n, replace=False)):
        kept = _histogram(np.delete(values, pick))
        for name, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
            low, high = bounds[name]
            assert low <= kept.get_value_at_percentile(q) / 1e3 <= high, (name, low, high)
    # With no rejection the bounds close on the percentile itself.
    exact = answered.unresolved(_histogram(values), 0)["answered_bounds_ms"]["p99"]
    assert exact[0] == exact[1] == pytest.approx(_histogram(values).get_value_at_percentile(99.0) / 1e3)


def test_the_python_engine_keeps_rejected_latencies_apart():
    rec = Recorder(0.0, 10.0)
    rec.record(0, 1.0, 1.002, Outcome("OK"))
    rec.record(1, 1.0, 1.0003, Outcome(UNAVAILABLE, detail="Exceeds maximum queue size"))
    assert rec.latency.get_total_count() == 1 and rec.failures == {"REJECTED": 1}
    apart = answered.rejected([stats.encode(rec.rejected_latency)])
    assert apart["of"] == "rejected" and apart["requests"] == 1 and apart["latency_ms"]["max"] == pytest.approx(0.3, rel=0.01)
    assert answered.rejected([stats.encode(stats.new_histogram()), ""]) is None


def test_repeats_pool_the_weakest_basis_and_the_rows_kept_apart():
    apart = answered.unresolved(_histogram([1000, 2000]), 1)
    one = {"throughput_basis": answered.CLIENT, "latency_apart": None}
    two = {"throughput_basis": answered.SERVER, "latency_apart": apart}
    three = {"throughput_basis": answered.SERVER, "latency_apart": apart}
    pooled = repeats._pooled_apart([one, two, three])
    assert pooled["throughput_basis"] == answered.SERVER
    assert pooled["latency_apart"]["requests"] == 4 and pooled["latency_apart"]["unanswered"] == 2
    assert repeats._pooled_apart([{"throughput_rps": 1.0}]) == {}  # records older than the field
