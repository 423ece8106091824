"""E-divisive means: change points in a short series, each with a permutation p-value.

Matteson & James (2014), "A nonparametric approach for multiple change point analysis of
multivariate data", as MongoDB's CI (Daly et al., ICPE 2020) runs it on performance histories.

Why this and not ruptures' Pelt/Binseg: those minimise a cost plus a penalty, and the penalty
must be tuned to each series' noise; a noisy history then yields either false change points or
none. E-divisive instead asks, for the best split, "how often does a random shuffle of the same
values split as well?", which is a p-value with a stated significance level and no tuning. Our
histories are tens of runs long, so a few hundred permutations cost milliseconds. (Apache Otava,
formerly Hunter, replaced the permutation test by a t-test between neighbouring segments to be
fast and deterministic on thousands of points; we keep the permutation test and make it
deterministic with a fixed seed.) ruptures is used in the tests as an independent cross-check of
where the best split lies (its ``Binseg`` with the ``l2`` cost and ``jump=1``; they agree on the
recorded history with injected steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# alpha in |x - y|**alpha: 1 gives the energy distance, sensitive to any change in distribution.
DISTANCE_EXPONENT = 1.0
# A segment needs two points: one slow run alone is an outlier, never a new level.
MIN_SEGMENT = 2
PERMUTATIONS = 499
SEED = 20140101  # fixed, so the same history always gives the same verdict
TIE_TOLERANCE = 1e-9  # relative: split statistics this close are equal


@dataclass(frozen=True)
class ChangePoint:
    """A new segment starts at ``index`` (the first point after the change)."""

    index: int
    p_value: float
    statistic: float


def _split_statistics(batch: np.ndarray, min_size: int = MIN_SEGMENT) -> np.ndarray:
    """Q(tau) for every split of each row of ``batch`` into [:tau] and [tau:]; NaN where a side is too small.

    Q = m k / (m + k) * (2 mean|X - Y| - mean|X - X'| - mean|Y - Y'|), the scaled energy
    distance between the two sides (Matteson & James, eq. 5 with kappa = the segment end).
    All rows (the series and its permutations) at once, through 2-D prefix sums of the
    pairwise distances, so that any block sum costs four lookups.
    """
    rows, n = batch.shape
    out = np.full((rows, n + 1), np.nan)
    if n < 2 * min_size:
        return out
    dist = np.abs(batch[:, :, None] - batch[:, None, :]) ** DISTANCE_EXPONENT
    s = np.zeros((rows, n + 1, n + 1))
    s[:, 1:, 1:] = dist.cumsum(1).cumsum(2)
    tau = np.arange(min_size, n - min_size + 1)
    m, k = tau, n - tau
    within_x = s[:, tau, tau]
    between = s[:, tau, n] - within_x
    within_y = s[:, n, n][:, None] - 2 * s[:, tau, n] + within_x
    out[:, tau] = m * k / n * (2 * between / (m * k) - within_x / (m * (m - 1)) - within_y / (k * (k - 1)))
    return out


def _best_split(values: np.ndarray, start: int, stop: int) -> tuple[int, float]:
    q = _split_statistics(values[None, start:stop])[0]
    if np.all(np.isnan(q)):
        return -1, -np.inf
    tau = int(np.nanargmax(q))
    return start + tau, float(q[tau])


def _permuted_maxima(
    values: np.ndarray, segments: list[tuple[int, int]], permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """The best split statistic over all segments, for each of ``permutations`` within-segment shuffles."""
    best = np.full(permutations, -np.inf)
    for a, b in segments:
        shuffled = rng.permuted(np.broadcast_to(values[a:b], (permutations, b - a)), axis=1)
        q = _split_statistics(shuffled)
        if not np.all(np.isnan(q)):
            best = np.maximum(best, np.nanmax(q, axis=1))
    return best


def change_points(values: np.ndarray, alpha: float, permutations: int = PERMUTATIONS, seed: int = SEED) -> list[ChangePoint]:
    """Significant change points of a series, found by hierarchical bisection.

    Parameters
    ----------
    values
        The series in time order (for latency, use log values: its noise is multiplicative).
    alpha
        Significance level. Each round takes the best split over all current segments and keeps
        it only if fewer than ``alpha`` of the permuted series (each segment shuffled within
        itself, as Matteson & James do) split at least as well anywhere.
    permutations
        Shuffles per round; the smallest p-value reachable is ``1 / (permutations + 1)``.

    Returns
    -------
    list[ChangePoint]
        Sorted by index; empty when the series is one segment at this level.
    """
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    bounds = [0, len(values)]
    found: list[ChangePoint] = []
    while True:
        segments = list(zip(bounds[:-1], bounds[1:]))
        best = max((_best_split(values, a, b) for a, b in segments), key=lambda t: t[1])
        if best[0] < 0:
            break
        # Ties count as exceeding (a permutation that reproduces the split scores the same, up to
        # rounding): without the tolerance, rounding alone decided such ties either way.
        exceed = int((_permuted_maxima(values, segments, permutations, rng) >= best[1] - TIE_TOLERANCE * abs(best[1])).sum())
        p_value = (exceed + 1) / (permutations + 1)
        if p_value >= alpha:
            break
        found.append(ChangePoint(best[0], p_value, best[1]))
        bounds = sorted([*bounds, best[0]])
    return sorted(found, key=lambda c: c.index)
