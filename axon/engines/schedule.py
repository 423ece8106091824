"""Open-loop arrival schedules: when each request is *meant* to be sent.

Latency in open-loop mode runs from these intended times, so a stalled server cannot hide its
stall by slowing the sender down (no coordinated omission).
"""

from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("constant", "poisson")


def arrival_offsets(rate: float, duration_s: float, distribution: str = "constant", seed: int = 0) -> np.ndarray:
    """Intended send times (seconds from the start) of every arrival in ``[0, duration_s)``.

    ``constant`` spaces arrivals exactly ``1/rate`` apart; ``poisson`` draws exponential gaps
    with mean ``1/rate`` from a seeded generator, so a run can be repeated exactly.
    """
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be > 0, got {rate} and {duration_s}")
    if distribution == "constant":
        return np.arange(0.0, duration_s, 1.0 / rate)
    if distribution == "poisson":
        rng = np.random.default_rng(seed)
        # Draw comfortably more gaps than needed, then cut at the duration.
        expected = rate * duration_s
        gaps = rng.exponential(1.0 / rate, int(expected + 10 * np.sqrt(expected) + 100))
        times = np.cumsum(gaps) - gaps[0]
        while times[-1] < duration_s:  # astronomically rare; keep it exact anyway
            more = rng.exponential(1.0 / rate, len(gaps))
            times = np.concatenate([times, times[-1] + np.cumsum(more)])
        return times[times < duration_s]
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
