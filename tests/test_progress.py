"""The live progress line: labelled warm-up, a steady rate, plain lines off a terminal."""

from __future__ import annotations

import io

from axon import progress
from axon.progress import CaseProgress


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_label_the_warmup_and_show_a_steady_rate(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = CaseProgress("v1, c=64", duration_s=10, stream=out, tty=False)
    bar(-1.5, 0, float("nan"))
    # Workers publish their counts every 0.5 s while the display polls every 0.1 s: the count
    # moves in steps. The rate is taken over the last second, so the steps do not swing it.
    sent = 0
    for tick in range(1, 41):
        clock.t += 0.1
        if tick % 5 == 0:
            sent += 5_000  # 10,000 req/s, published in 0.5 s steps
        bar(tick * 0.1, sent, 3.2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "v1, c=64: warm-up, window opens in 1.5 s"
    assert lines[1].startswith("v1, c=64: window 0/10 s")  # the window's opening is said at once
    rates = [float(line.split(" requests so far, ")[1].split(" req/s")[0].replace(",", "")) for line in lines[2:]]
    assert rates and all(8_000 <= r <= 12_500 for r in rates), rates
    assert "\r" not in out.getvalue() and all(line.endswith("p99 3.20 ms") for line in lines[1:])


def test_a_count_goes_with_its_average_and_no_p99_is_shown_where_the_engine_has_none(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = CaseProgress("native", duration_s=10, stream=out, tty=False)
    clock.t += 0.1
    bar(0.1, 0, float("nan"))  # the window just opened: no average yet, and no p99 placeholder
    clock.t += 3
    bar(3.0, 540, float("nan"))  # h2load's count so far; its latencies come at the end
    lines = out.getvalue().splitlines()
    assert lines == [
        "native: window 0/10 s, 0 requests so far",
        "native: window 3/10 s, 540 requests so far, 180 req/s on average",
    ], lines


def test_plain_lines_are_spaced(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = CaseProgress("x", duration_s=30, stream=out, tty=False)
    for tick in range(100):  # 10 s of polls every 0.1 s
        clock.t += 0.1
        bar(tick * 0.1, tick * 100, float("nan"))
    # One line when the window opens, then one per PLAIN_INTERVAL_S: a log, not a flood.
    assert len(out.getvalue().splitlines()) <= 1 + 10 / progress.PLAIN_INTERVAL_S + 1
