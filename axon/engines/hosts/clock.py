"""Clocks across hosts: offsets from the scheduler, the start lead, and the window-start check.

Every host starts its load at one instant T on the *scheduler's* clock. A host knows its own
clock, so it needs its offset from the scheduler's. We measure it NTP-style: read local time,
ask the scheduler for its time, read local time again; the offset is the scheduler's answer
against the midpoint, and the sample with the shortest round trip wins, since its midpoint is
closest to the moment the scheduler read its clock. The true offset lies within half that
round trip of the estimate, which the record keeps as the offset's uncertainty.

Why not Dask's own ``Worker.scheduler_delay``: it is the same estimate from the last heartbeat
alone (no filtering over several samples, and no round trip to bound its error), taken up to
a heartbeat interval earlier. The record keeps it beside ours as a cross-check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

PINGS = 8  # samples per offset estimate; the shortest round trip is kept
# The start time is set this far ahead of the scheduler's clock: at least MIN_LEAD_S, and
# LEAD_RTT_FACTOR times the worst round trip seen, so every host learns T well before T.
MIN_LEAD_S = 0.5
LEAD_RTT_FACTOR = 10.0
# The run is incomplete when its window starts spread over more than this share of the
# warm-up (at least MIN_SPREAD_LIMIT_S): the warm-up is what absorbs a host starting late.
MAX_START_SPREAD_FRACTION = 0.1
MIN_SPREAD_LIMIT_S = 0.005


@dataclass(frozen=True)
class Offset:
    """``local clock - scheduler clock`` in seconds, within ``± uncertainty_s``."""

    offset_s: float
    uncertainty_s: float  # half the shortest round trip
    worst_rtt_s: float  # the longest round trip seen, for the start lead

    def as_dict(self) -> dict:
        return asdict(self)


def measure_offset(local: Callable[[], float], remote: Callable[[], float], pings: int = PINGS) -> Offset:
    """Estimate ``local() - remote()`` from ``pings`` round trips (``remote`` is a blocking call)."""
    best_rtt, best_offset, worst_rtt = math.inf, 0.0, 0.0
    for _ in range(pings):
        t0 = local()
        there = remote()
        t1 = local()
        rtt = t1 - t0
        worst_rtt = max(worst_rtt, rtt)
        if rtt < best_rtt:
            best_rtt, best_offset = rtt, (t0 + t1) / 2 - there
    return Offset(best_offset, best_rtt / 2, worst_rtt)


def start_lead_s(worst_rtt_s: float) -> float:
    """How far ahead of the scheduler's now the common start is set."""
    return max(MIN_LEAD_S, LEAD_RTT_FACTOR * worst_rtt_s)


def local_start(start_on_scheduler: float, offset: Offset, corrected: bool = True) -> float:
    """The host's own-clock time of the common start (uncorrected: T read as if clocks agreed)."""
    return start_on_scheduler + (offset.offset_s if corrected else 0.0)


def on_scheduler_clock(local_time: float, offset: Offset) -> float:
    """A time read on the host's clock, expressed on the scheduler's."""
    return local_time - offset.offset_s


def spread_limit_s(warmup_s: float) -> float:
    return max(MAX_START_SPREAD_FRACTION * warmup_s, MIN_SPREAD_LIMIT_S)


@dataclass(frozen=True)
class Alignment:
    """How closely the hosts' windows started together, on the scheduler's clock."""

    spread_s: float  # latest minus earliest window start, as measured
    bound_s: float  # the spread plus the offsets' uncertainty: what the judgement uses
    limit_s: float
    aligned: bool

    def as_dict(self) -> dict:
        return asdict(self)


def alignment(window_starts: Sequence[float], uncertainties: Sequence[float], warmup_s: float) -> Alignment:
    """Judge the window starts (scheduler clock) of every load process on every host.

    Each start is known to within its host's offset uncertainty, so two of them may truly
    differ by the measured spread plus the two largest uncertainties: that bound is judged.
    """
    limit = spread_limit_s(warmup_s)
    if not window_starts:
        return Alignment(math.nan, math.nan, limit, False)
    spread = max(window_starts) - min(window_starts)
    worst_two = sorted(uncertainties, reverse=True)[:2]
    bound = spread + sum(worst_two)
    return Alignment(spread, bound, limit, bound <= limit)
