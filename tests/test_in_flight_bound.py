"""The client's own bound on requests in flight (open loop), in both engines, and what the record says it shed.

An open loop against a server that cannot keep up would otherwise hold every due request:
memory grows with rate x stall, in the client as well as the server. Both engines cap the
requests in flight; a request that falls due past the cap is not sent and counts as a
failure of its own class, ``CLIENT_OVERLOAD``, and ``schedule.not_sent`` says how many.

The real-server tests calibrate themselves: they first measure what one request in flight
carries on this machine (closed loop, c=1), then offer three times that with a bound of one.
Whatever the machine's speed, about two thirds of the due requests cannot be sent.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from axon.case import Target, prepare, run_case
from axon.engines import native_open
from axon.engines.loadgen import CLIENT_OVERLOAD, LoadSpec
from axon.errors import AxonError

V1 = "particle_classifier_v1"
WINDOW = {"duration_s": 2.0, "warmup_s": 0.5, "timeout_s": 5.0, "max_error_rate": 1.0}
OVERSUBSCRIPTION = 3.0  # the offered rate, in multiples of what one request in flight carries


# --------------------------------------------------------------------------- units


def test_native_streams_share_the_bound():
    assert native_open.open_topology(1000.0, None, 10) == (1, 10, 1000.0)
    assert native_open.open_topology(1000.0, 2, 9) == (2, 4, 500.0)  # rounded down: never above the bound
    with pytest.raises(AxonError, match="below the 2 h2load connections"):
        native_open.open_topology(15_000.0, None, 1)


def test_not_sent_counts_the_due_requests_h2load_never_started():
    full = {"peak_in_flight": 64, "streams": 64}  # every stream was busy at some point
    assert native_open.not_sent({"started": 2000}, 1000.0, 2.0, **full) == 0  # kept up: every due request started
    assert native_open.not_sent({"started": 2004}, 1000.0, 2.0, **full) == 0  # the backlog of the warm-up, sent in the window
    assert native_open.not_sent({"started": 700}, 1000.0, 2.0, **full) == 1300
    assert native_open.not_sent({}, 1000.0, 2.0, **full) == 0  # no summary (killed): nothing claimed


def test_a_shortfall_with_a_stream_always_free_is_the_window_edge_not_shed_load():
    # Measured: a client that kept up at 1,000/s over 1 s started 999 (the window ended between ticks).
    assert native_open.not_sent({"started": 999}, 1000.0, 1.0, peak_in_flight=12, streams=64) == 0
    assert native_open.not_sent({"started": 700}, 1000.0, 1.0, peak_in_flight=63, streams=64) == 0
    assert native_open.not_sent({"started": 700}, 1000.0, 1.0, peak_in_flight=1, streams=1) == 300


def test_peak_in_flight_reads_the_log():
    rows = np.array([[0, 200, 10], [5, 200, 10], [10, 200, 5], [16, 200, 1]])  # start µs, status, duration µs
    assert native_open.peak_in_flight(rows) == 2  # the third starts as the first ends: its stream was freed first
    assert native_open.peak_in_flight(np.zeros((0, 3), dtype=np.int64)) == 0
    back_to_back = np.array([[0, 200, 10], [10, 200, 10], [20, 200, 10]])
    assert native_open.peak_in_flight(back_to_back) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"concurrency": 4, "max_in_flight": 8}, "goes with an open-loop rate"),
        ({"rate": 100.0, "max_in_flight": 0}, "must be >= 1"),
        ({"rate": 100.0, "max_in_flight": 1, "processes": 2, "engine": "python"}, "cannot be shared by 2 processes"),
        ({"rate": 15_000.0, "max_in_flight": 1, "engine": "native"}, "below the 2 h2load connections"),
    ],
)
def test_a_bound_that_cannot_hold_is_refused_before_anything_runs(spec, message):
    with pytest.raises(AxonError, match=message):
        prepare(LoadSpec(V1, **spec))


# --------------------------------------------------------------------------- the real server


def _one_in_flight_rate(server, features, engine: str) -> float:
    """What one request in flight carries here: closed loop at c=1 on the same engine."""
    r = run_case(LoadSpec(V1, concurrency=1, engine=engine, **WINDOW), Target.of(server, "on"), features)
    assert r["throughput_rps"] > 0, r["verdicts"]
    return r["throughput_rps"]


def _assert_shed_and_said(r: dict, rate: float) -> None:
    s, req = r["schedule"], r["requests"]
    assert r["engine"]["in_flight_limit"] == s["in_flight_limit"] == r["load"]["max_in_flight"] == 1
    due = rate * WINDOW["duration_s"]
    # With one request in flight carrying a third of the rate, about two thirds cannot be sent.
    assert s["not_sent"] == req["failures"].get(CLIENT_OVERLOAD, 0) >= 0.3 * due, (s, req)
    assert req["ok"] + sum(req["failures"].values()) == req["sent"]
    # What was really sent is what one request in flight carries, never the offered rate.
    assert s["sent_rps"] <= 0.7 * rate, s


@pytest.mark.server
def test_the_native_open_loop_sheds_past_its_bound_and_says_so(server_v1, validation_rows):
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed (make setup installs it)")
    features = validation_rows[0]
    rate = OVERSUBSCRIPTION * _one_in_flight_rate(server_v1, features, "native")
    # One connection whatever the rate, so a bound of one stream is possible.
    r = run_case(
        LoadSpec(V1, rate=rate, max_in_flight=1, connections=1, engine="native", **WINDOW), Target.of(server_v1, "on"), features
    )
    _assert_shed_and_said(r, rate)
    due = rate * WINDOW["duration_s"]
    assert abs(r["requests"]["sent"] - due) <= 0.05 * due + 2, (r["requests"], due)  # sent + not sent = what fell due
    assert r["verification"]["verified"], r["verification"]  # Triton's counters still agree with what was sent


@pytest.mark.server
def test_the_python_open_loop_sheds_past_its_bound_and_says_so(server_v1, validation_rows):
    features = validation_rows[0]
    rate = OVERSUBSCRIPTION * _one_in_flight_rate(server_v1, features, "python")
    r = run_case(
        LoadSpec(V1, rate=rate, max_in_flight=1, processes=1, engine="python", **WINDOW), Target.of(server_v1, "on"), features
    )
    _assert_shed_and_said(r, rate)
