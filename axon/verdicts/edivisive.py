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
where the best split lies (its ``Binseg`` with the ``l2`` cost).
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


@dataclass(frozen=True)
class ChangePoint:
    """A new segment starts at ``index`` (the first point after the change)."""

    index: int
    p_value: float
    statistic: float


def _block_sums(values: np.ndarray) -> np.ndarray:
    """2-D prefix sums of the pairwise distance matrix, so any block sum costs four lookups."""
    dist = np.abs(values[:, None] - values[None, :]) ** DISTANCE_EXPONENT
    sums = np.zeros((len(values) + 1, len(values) + 1))
    sums[1:, 1:] = dist.cumsum(0).cumsum(1)
    return sums


def _split_statistics(values: np.ndarray, min_size: int = MIN_SEGMENT) -> np.ndarray:
    """Q(tau) for every split tau of ``values`` into [:tau] and [tau:]; NaN where a side is too small.

    Q = m n / (m + n) * (2 mean|X - Y| - mean|X - X'| - mean|Y - Y'|), the scaled energy
    distance between the two sides (Matteson & James, eq. 5 with kappa = the segment end).
    """
    n = len(values)
    out = np.full(n + 1, np.nan)
    if n < 2 * min_size:
        return out
    s = _block_sums(values)

    def block(a: int, b: int, c: int, d: int) -> float:
        return s[b, d] - s[a, d] - s[b, c] + s[a, c]

    for tau in range(min_size, n - min_size + 1):
        m, k = tau, n - tau
        between = block(0, tau, tau, n) / (m * k)
        within_x = block(0, tau, 0, tau) / (m * (m - 1))
        within_y = block(tau, n, tau, n) / (k * (k - 1))
        out[tau] = m * k / n * (2 * between - within_x - within_y)
    return out


def _best_split(values: np.ndarray, start: int, stop: int) -> tuple[int, float]:
    q = _split_statistics(values[start:stop])
    if np.all(np.isnan(q)):
        return -1, -np.inf
    tau = int(np.nanargmax(q))
    return start + tau, float(q[tau])


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
        exceed = 0
        shuffled = values.copy()
        for _ in range(permutations):
            for a, b in segments:
                shuffled[a:b] = rng.permutation(values[a:b])
            if max(_best_split(shuffled, a, b)[1] for a, b in segments) >= best[1]:
                exceed += 1
        p_value = (exceed + 1) / (permutations + 1)
        if p_value >= alpha:
            break
        found.append(ChangePoint(best[0], p_value, best[1]))
        bounds = sorted([*bounds, best[0]])
    return sorted(found, key=lambda c: c.index)
