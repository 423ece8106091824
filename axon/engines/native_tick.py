"""h2load's release tick in open loop: read from its own log, checked, or refused.

h2load ``--rps`` releases the requests that fell due on a timer (nghttp2 1.52: every
``max(10 ms, 1/R)``, ``rps_watcher.repeat`` in h2load.cc), and :mod:`axon.engines.native_open`
times each latency from its request's release tick. Another release might tick otherwise, and
would mis-time every latency unseen, so the tick is read from each client's log
(:func:`measure_tick`): the requests one tick releases are sent back to back, releases are a
tick apart. Where a log shows no tick (every stream held, so sends follow freed streams), a
checked release's tick stands in; an unchecked release's cannot, and the run says so
(:func:`tick_problem`).
"""

from __future__ import annotations

import math

import numpy as np

RPS_TICK_S = 0.01  # h2load 1.52: rps_watcher.repeat = max(0.01, 1 / rps)
# The h2load releases whose pacing was checked here (source read, and a log measured): each
# one's base tick. Another release's tick is read from its own log (:func:`measure_tick`);
# where its log shows none, its latencies cannot be timed from release ticks and the run says so.
CHECKED_TICKS = {"nghttp2/1.52.0": RPS_TICK_S}
# measure_tick's evidence: this many releases at least, keeping to one grid this tightly
# (a timer firing up to 2 ms either side of a 10 ms grid gives 0.76), else the log shows no tick.
MIN_RELEASES = 20
MIN_GRID_CONCENTRATION = 0.5
# A tick read within this of a checked release's is that release's tick: its exact value is
# used. Measured 2026-12-07 on a loaded machine (load 6 on 2 cores), 2,000/s: the fit read
# 9.985 ms, pulled by timer firings late enough to shift libev's grid.
TICK_AGREES = 0.01


def tick_s(rate_per_client: float) -> float:
    """The release tick h2load 1.52 uses at this per-client rate: what a run is planned with (staggering, scrapes)."""
    return max(RPS_TICK_S, 1.0 / rate_per_client)


def measure_tick(start: np.ndarray, rate: float) -> float | None:
    """The release tick read from one client's send times (seconds, sorted), or None where they show none.

    h2load sends the requests one tick releases back to back (microseconds apart), and the
    tick is at least 1/R, so sends closer than half the mean spacing 1/R belong to one
    release. The median step between releases is a first estimate; a line fitted through the
    releases near it, over a span doubled at each pass, makes it exact over the whole run (a
    firing wanders by a millisecond, the grid does not). Checked: at least
    :data:`MIN_RELEASES` releases, and :data:`ON_GRID_SHARE` of them within a quarter tick of
    the fitted grid; a log whose sends follow freed streams (every stream held) shows no tick.
    """
    if len(start) < 2 or rate <= 0:
        return None
    releases = start[np.r_[0, np.nonzero(np.diff(start) > 0.5 / rate)[0] + 1]]
    if len(releases) < MIN_RELEASES:
        return None
    step = float(np.median(np.diff(releases)))
    # A release split by a pause inside it reads as two close releases: merge those, once.
    releases = releases[np.r_[0, np.nonzero(np.diff(releases) > step / 4)[0] + 1]]
    step = float(np.median(np.diff(releases)))
    if len(releases) < MIN_RELEASES or step <= 0:
        return None
    origin, tick = float(releases[0]), step
    span = 16 * tick
    while True:
        near = releases[releases - origin <= span]
        index = np.round((near - origin) / tick)
        on = np.abs(near - origin - index * tick) <= tick / 4
        if np.count_nonzero(on) >= 2 and np.ptp(index[on]) > 0:
            tick, origin = (float(v) for v in np.polyfit(index[on], near[on], 1))
        if span >= releases[-1] - releases[0]:
            break
        span *= 2
    if tick <= 0:
        return None
    # How tightly the releases keep to the grid: the mean resultant length of their phases
    # (1: all on it; about 1/sqrt(n): sends at random instants, whatever step they average).
    phases = 2 * np.pi * (releases - origin) / tick
    return tick if math.hypot(np.cos(phases).mean(), np.sin(phases).mean()) >= MIN_GRID_CONCENTRATION else None


def tick_problem(version: str | None, measured: list[float | None]) -> str | None:
    """Why latencies timed from release ticks can't be trusted (one line), or None.

    Every client's tick is read from its log; where a log shows none, the tick of a checked
    release stands in (its pacing is known), and an unchecked release's cannot.
    """
    if all(t is not None for t in measured) or version in CHECKED_TICKS:
        return None
    checked = ", ".join(CHECKED_TICKS)
    return (
        f"h2load {version}'s release tick could not be read from its log and its pacing is unchecked (checked: {checked}), "
        "so latencies timed from its release ticks can't be trusted (use h2load 1.52, or --engine python)"
    )


def tick_info(version: str | None, schedules: list, rate: float) -> dict:
    """What the record says of h2load's release tick: the one its latencies were timed from, and where it came from."""
    measured = [sched.tick for sched in schedules if sched.tick_measured]
    expected = max(CHECKED_TICKS[version], 1.0 / rate) if version in CHECKED_TICKS else None
    tick = float(np.median(measured)) if measured else (expected or tick_s(rate))
    read = [sched.tick_read for sched in schedules if sched.tick_read is not None]
    if measured and len(measured) == len(schedules):
        source = "measured from h2load's log"
        if expected and tick == expected:
            source += f" ({float(np.median(read)) * 1e3:.4g} ms: {version}'s {expected * 1e3:.3g} ms)"
    elif measured:
        source = f"measured from {len(measured)} of {len(schedules)} h2load logs; h2load 1.52's tick for the rest"
    else:
        source = f"{version}'s, checked (the log showed no tick)" if expected else "assumed (no tick in its log, unchecked)"
    schedule = f"h2load --rps: due requests released every {tick * 1e3:.3g} ms; latency timed from the release tick"
    out = {"tick_ms": tick * 1e3, "tick_source": source, "schedule": schedule}
    if measured and expected and abs(tick - expected) > 0.1 * expected:
        out["tick_source"] += f" ({tick * 1e3:.3g} ms, not the {expected * 1e3:.3g} ms {version} was checked with)"
    return out
