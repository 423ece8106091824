"""The head-to-head that crowns a winner: the screen's apparent winner against the default, on fresh runs.

The screen's runs chose the nominee, so they cannot also vouch for it: among a dozen candidates
no better than the default, the best-looking one looks better by selection alone. So tune measures
the nominee again against the default, in ``pairs`` interleaved pairs (default, nominee, default,
nominee, ...), each loaded afresh and run at its own operating point's concurrency, so drift
within a pair hits both sides alike.

The nominee is **crowned** only when all of these hold:

- its head-to-head runs keep the budget (medians of p50 and p99);
- a one-sided paired t-test on the pairs' log throughput ratios gives ``p < alpha``: fresh data,
  so this alone bounds the chance of crowning a no-better candidate at ``alpha``;
- the closed test holds too: the screen's Holm-Šidák-adjusted p (corrected for every candidate tried)
  combined with the head-to-head's p by the weighted inverse-normal method gives ``p < alpha``.
  The weights are fixed by the plan before any run (screen runs per side : pairs), which keeps
  the combination valid whichever candidate the screen picked (Bauer and Köhne's adaptive
  designs; Bretz et al. 2006 for selection among many).

When the default breaks the budget and the nominee kept it in every screen run, throughput is
not the question: the nominee is crowned when it keeps the budget in every head-to-head run and
the default's head-to-head median breaks it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import numpy as np
from scipy import stats as sps

from axon.study.tune import CONFIRM_PAIRS
from axon.study.tune.verdict import Budget

DEFAULT_PAIRS = CONFIRM_PAIRS


class Confirmation(TypedDict):
    """What the head-to-head showed; saved in tune.json as ``confirmation``."""

    candidate: str
    pairs: int  # pairs measured (fewer than planned when interrupted)
    default_rps: list[float]  # per pair, in order
    candidate_rps: list[float]
    change: float | None  # geometric mean of the pairs' ratios - 1
    wins: int  # pairs in which the candidate served more
    p_value: float | None  # one-sided paired t on log ratios
    screen_p: float | None  # the screen's Holm-Šidák-adjusted p
    combined_p: float | None  # the closed test: screen and head-to-head combined
    in_budget: bool
    held: bool
    reason: str


def paired_p(default: Sequence[float], candidate: Sequence[float]) -> float:
    """One-sided p of the paired log ratios being > 0 (Student's t, df = pairs - 1)."""
    d = np.log(np.asarray(candidate, dtype=float)) - np.log(np.asarray(default, dtype=float))
    if len(d) < 2:
        return 1.0
    sd = float(d.std(ddof=1))
    if sd == 0:  # every pair the same ratio: certain, either way
        return 0.0 if d.mean() > 0 else 1.0
    return float(sps.t.sf(d.mean() / (sd / math.sqrt(len(d))), len(d) - 1))


def combined_p(screen_p: float, head_p: float, screen_runs: int, pairs: int) -> float:
    """Weighted inverse normal: 1 - Phi(w1 z(screen) + w2 z(head)), w^2 proportional to the planned runs."""
    if screen_p >= 1.0 or head_p >= 1.0:
        return 1.0
    w1, w2 = math.sqrt(screen_runs / (screen_runs + pairs)), math.sqrt(pairs / (screen_runs + pairs))
    z = w1 * sps.norm.isf(max(screen_p, 1e-300)) + w2 * sps.norm.isf(max(head_p, 1e-300))
    return float(sps.norm.sf(z))


def _median(records: Sequence[dict], key: str) -> float:
    return float(np.median([r["latency_ms"][key] for r in records]))


def decide(
    cid: str,
    default_runs: Sequence[dict],
    candidate_runs: Sequence[dict],
    screen_p: float | None,
    screen_runs: int,
    planned_pairs: int,
    budget: Budget,
    alpha: float,
    default_breaks_budget: bool = False,
) -> Confirmation:
    """The verdict of the head-to-head, from its run records (pair k: ``default_runs[k]``, ``candidate_runs[k]``)."""
    n = min(len(default_runs), len(candidate_runs))
    a = [r["throughput_rps"] for r in default_runs[:n]]
    b = [r["throughput_rps"] for r in candidate_runs[:n]]
    mine = candidate_runs[:n]
    base: Confirmation = {
        "candidate": cid,
        "pairs": n,
        "default_rps": a,
        "candidate_rps": b,
        "change": None,
        "wins": sum(y > x for x, y in zip(a, b)),
        "p_value": None,
        "screen_p": screen_p,
        "combined_p": None,
        "in_budget": False,
        "held": False,
        "reason": "",
    }
    if n < 2:
        return {**base, "reason": f"{n} pair(s) measured: too few to judge"}
    base["change"] = float(math.exp(np.mean(np.log(b)) - np.mean(np.log(a))) - 1)
    base["in_budget"] = budget.holds(_median(mine, "p50"), _median(mine, "p99"))
    if default_breaks_budget:
        every = all(budget.holds(r["latency_ms"]["p50"], r["latency_ms"]["p99"]) for r in mine)
        default_breaks = not budget.holds(_median(default_runs[:n], "p50"), _median(default_runs[:n], "p99"))
        held = every and default_breaks
        why = (
            "kept the budget in every pair while the default broke it"
            if held
            else ("missed the budget in some pairs" if not every else "the default kept the budget this time")
        )
        return {**base, "held": held, "reason": why}
    if not base["in_budget"]:
        return {**base, "reason": "broke the budget in the head-to-head"}
    p = paired_p(a, b)
    combined = combined_p(1.0 if screen_p is None else screen_p, p, screen_runs, planned_pairs)
    held = p < alpha and combined < alpha
    if held:
        why = f"held: p={p:.2g}, with the screen p={combined:.2g} < {alpha:g}"
    elif p >= alpha:
        why = f"did not hold: p={p:.2g} ≥ {alpha:g}"
    else:
        why = f"did not hold with the screen: p={combined:.2g} ≥ {alpha:g}"
    return {**base, "p_value": p, "combined_p": combined, "held": held, "reason": why}


def sentence(c: Confirmation, label: str) -> str:
    """What the head-to-head showed, in words, for the summary line and report.md."""
    change = "" if c["change"] is None else f"{c['change']:+.1%}, "
    return f"head-to-head against the default, {c['pairs']} interleaved pairs: {change}{label} ahead in {c['wins']}/{c['pairs']}; {c['reason']}"
