"""Each candidate's operating point, and whether it beats the default beyond the noise.

A candidate's **operating point** is the concurrency, among those measured, with the highest
median throughput whose median p50 and p99 are within the budgets. A candidate with no such
point breaks the budget: it is listed (at its highest-throughput point) but cannot win.

The **screen** says which candidates beat the default beyond noise, corrected for how many were
tried: each measured candidate gets a one-sided t-test of its log run throughputs against the
default's (the default's runs from the same search stages, so both sides were measured in the
same interleaved rounds), and Holm's step-down correction over every measured candidate keeps
the chance that any no-better candidate passes at or below ``alpha``. One run is one sample:
the requests of a run are never the evidence. The run-to-run spread is pooled over every
candidate's operating point: all were measured on the same machine in the same rounds, and with
3 runs a side a per-pair (Welch) test has 2-4 degrees of freedom, too few to survive the
correction for a dozen candidates (12 x 3 runs pool 24).

The old rule (ranges apart, else Welch p < 0.01, per candidate and uncorrected) crowned a
no-better candidate somewhere in a dozen too often: two runs of one command named two winners.
The screen only nominates; :mod:`axon.study.tune.confirm` crowns, after a fresh head-to-head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as sps

from axon.records.repeats import Spread
from axon.study.tune import ALPHA
from axon.verdicts.slo import LatencyBudget

NO_WINNER = "no candidate beats the default beyond noise"
MIN_RUNS = 2  # noise can be judged only with at least two runs a side
CRASHED = "crashed the server"
DEFAULT_ALPHA = ALPHA


# The p50/p99 pair a candidate must hold (the one definition lives with the other budgets).
Budget = LatencyBudget


@dataclass(frozen=True)
class Point:
    """One candidate at one concurrency, over its repeats."""

    concurrency: int
    throughput: Spread
    p50: Spread
    p99: Spread
    values: tuple[float, ...]  # throughput per run, in round order
    in_budget: bool  # medians within both budgets
    every_run_in_budget: bool

    def as_dict(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "throughput_rps": self.throughput.as_dict(),
            "p50_ms": self.p50.as_dict(),
            "p99_ms": self.p99.as_dict(),
            "in_budget": self.in_budget,
            "every_run_in_budget": self.every_run_in_budget,
        }


def points(runs: Sequence[dict], budget: Budget) -> dict[int, Point]:
    """concurrency -> Point, from one candidate's closed-loop runs."""
    by_c: dict[int, list[dict]] = {}
    for r in sorted(runs, key=lambda r: (r["tune"]["stage"], r["tune"]["round"])):
        by_c.setdefault(r["load"]["concurrency"], []).append(r)
    out = {}
    for c, group in sorted(by_c.items()):
        thr = [r["throughput_rps"] for r in group]
        p50 = Spread.of(r["latency_ms"]["p50"] for r in group)
        p99 = Spread.of(r["latency_ms"]["p99"] for r in group)
        every = all(budget.holds(r["latency_ms"]["p50"], r["latency_ms"]["p99"]) for r in group)
        out[c] = Point(c, Spread.of(thr), p50, p99, tuple(thr), budget.holds(p50.median, p99.median), every)
    return out


def operating_point(runs: Sequence[dict], budget: Budget) -> Point | None:
    """The best in-budget point, else the highest-throughput point (in_budget False), else None."""
    found = points(runs, budget)
    if not found:
        return None
    inside = [p for p in found.values() if p.in_budget]
    return max(inside or found.values(), key=lambda p: p.throughput.median)


@dataclass(frozen=True)
class Comparison:
    """A candidate against the default: the change in median throughput and the verdict."""

    change: float | None  # candidate median / default median - 1
    beats: bool  # beyond noise after the correction for every candidate tried (the screen)
    reason: str
    p_value: float | None = None  # one-sided, this candidate alone
    holm_p: float | None = None  # Holm-Šidák-adjusted over every measured candidate

    def as_dict(self) -> dict:
        return {
            "change": self.change,
            "beats_default": self.beats,
            "reason": self.reason,
            "p_value": self.p_value,
            "holm_p": self.holm_p,
        }


def compare(candidate: Point | None, default: Point | None, noise: tuple[float, int] | None = None) -> Comparison:
    """The candidate against the default, uncorrected: the change in median and a one-sided p.

    ``noise`` is the pooled (sd of log runs, degrees of freedom); without it, the two sides'
    own. ``beats`` is left False here: only :func:`screen` (corrected for many candidates) sets it.
    """
    if candidate is None:
        return Comparison(None, False, "not measured")
    if not candidate.in_budget:
        return Comparison(_change(candidate, default), False, "breaks the budget")
    if candidate.throughput.n < MIN_RUNS:
        return Comparison(_change(candidate, default), False, "one run: noise not judged")
    if default is None or not default.in_budget:
        # Nothing within budget to beat: the candidate wins only if it met the budget every time.
        if candidate.every_run_in_budget:
            return Comparison(None, False, "the default breaks the budget; this meets it in every run", 0.0)
        return Comparison(None, False, "the default breaks the budget; this missed it in some runs")
    change = _change(candidate, default)
    if default.throughput.n < MIN_RUNS:
        return Comparison(change, False, "one default run: noise not judged")
    sd, df = noise or pooled_noise([default.values, candidate.values])
    p = one_sided_p(default.values, candidate.values, sd, df)
    if change is None or change <= 0:
        return Comparison(change, False, "not above the default", p)
    return Comparison(change, False, "within noise", p)


def pooled_noise(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The run-to-run sd of log throughput pooled over groups (each group: one point's runs), and its df."""
    squares, df = 0.0, 0
    for values in groups:
        if len(values) >= MIN_RUNS:
            logs = np.log(np.asarray(values, dtype=float))
            squares += float(((logs - logs.mean()) ** 2).sum())
            df += len(logs) - 1
    return (math.sqrt(squares / df) if df else 0.0), df


def one_sided_p(default: Sequence[float], candidate: Sequence[float], sd: float, df: int) -> float:
    """P(a mean log throughput this far above the default's | no real difference): Student's t with the pooled sd."""
    a, b = np.log(np.asarray(default, dtype=float)), np.log(np.asarray(candidate, dtype=float))
    diff = float(b.mean() - a.mean())
    se = sd * math.sqrt(1 / len(a) + 1 / len(b))
    if df < 1 or se <= 0:  # no spread at all: any gain is certain, no gain is not one
        return 0.0 if diff > 0 else 1.0
    return float(sps.t.sf(diff / se, df))


def holm_sidak(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values with Šidák's steps, in input order (m = the number given).

    Šidák's 1 - (1 - p)^k in place of Bonferroni's k p: valid for tests that rise together, as
    these do (one default, one pooled sd), and never capped at 1, so a weak screen still carries
    its evidence into the head-to-head's closed test instead of ruling a real gain out.
    """
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for k, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, 1.0 - (1.0 - p_values[i]) ** (m - k))
        adjusted[i] = running
    return adjusted


def screen(comparisons: dict[str, Comparison], alpha: float = DEFAULT_ALPHA) -> dict[str, Comparison]:
    """Holm-Šidák over every comparison given (one per measured candidate): beats = adjusted p < alpha and a gain.

    A candidate that cannot be judged (over budget, one run) counts in the family with p = 1:
    it was tried, and a correction that forgot it would be lighter than the search.
    """
    ids = list(comparisons)
    adjusted = holm_sidak([1.0 if comparisons[c].p_value is None else comparisons[c].p_value for c in ids])
    out = {}
    for cid, adj in zip(ids, adjusted):
        cmp = comparisons[cid]
        if cmp.p_value is None:
            out[cid] = cmp
            continue
        gain = cmp.change is None or cmp.change > 0  # None: the default breaks the budget, this meets it
        beats = gain and adj < alpha
        if cmp.change is None or not gain:
            reason = cmp.reason
        else:
            reason = f"{'beyond' if beats else 'within'} noise (p={adj:.2g} for {len(ids)} tried)"
        out[cid] = replace(cmp, beats=beats, reason=reason, holm_p=adj)
    return out


def _change(candidate: Point, default: Point | None) -> float | None:
    if default is None or not default.throughput.median:
        return None
    return candidate.throughput.median / default.throughput.median - 1


def compare_capacity(candidate: dict | None, default: dict | None) -> Comparison:
    """Capacity (open loop, p99 budget): beyond noise when the candidate holds a rate the default
    fails at, each judged by the majority of its repeats (:func:`axon.study.plan.capacity_table`)."""
    if not candidate or candidate.get("max_rate") is None:
        return Comparison(None, False, "no rate within the p99 budget")
    mine = candidate["max_rate"]
    if not default or default.get("max_rate") is None:
        return Comparison(None, True, "the default holds no rate within budget")
    change = mine / default["max_rate"] - 1
    first_fail = default.get("first_fail")
    if mine > default["max_rate"] and first_fail is not None and mine >= first_fail:
        return Comparison(change, True, f"holds {mine:,.0f}/s; the default fails at {first_fail:,.0f}/s")
    return Comparison(change, False, "within noise" if change > 0 else "not above the default")


@dataclass(frozen=True)
class Evaluation:
    """One candidate's line in the ranked table."""

    cid: str
    label: str
    status: str  # "default", "measured", "failed"
    point: Point | None
    comparison: Comparison
    capacity: dict | None = None
    capacity_comparison: Comparison | None = None
    confirmation: dict | None = None  # the head-to-head, for the nominee only (axon.study.tune.confirm)

    @property
    def score(self) -> float:
        return self.point.throughput.median if self.point else float("-inf")

    def as_dict(self) -> dict:
        return {
            "candidate": self.cid,
            "label": self.label,
            "status": self.status,
            "point": self.point.as_dict() if self.point else None,
            "comparison": self.comparison.as_dict(),
            "capacity": self.capacity,
            "capacity_comparison": self.capacity_comparison.as_dict() if self.capacity_comparison else None,
            "confirmation": self.confirmation,
        }


def evaluate(
    candidates: Sequence[dict],
    runs: Sequence[dict],
    budget: Budget,
    capacities: dict[str, dict] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> list[Evaluation]:
    """Every candidate judged against the default (``candidates[0]``), in input order, through the screen."""
    default_id = candidates[0]["id"]
    capacities = capacities or {}
    found: dict[str, tuple[dict, Point | None, Point | None]] = {}
    for cand in candidates:
        mine = [r for r in runs if r["tune"]["candidate"] == cand["id"]]
        stages = {r["tune"]["stage"] for r in mine}
        base = [r for r in runs if r["tune"]["candidate"] == default_id and r["tune"]["stage"] in stages]
        found[cand["id"]] = (cand, operating_point(mine, budget), operating_point(base, budget))
    noise = pooled_noise([p.values for _, p, _ in found.values() if p is not None])
    measured = {
        cid: compare(p, base, noise) for cid, (cand, p, base) in found.items() if cid != default_id and not cand.get("error")
    }
    screened = screen(measured, alpha)
    out = []
    for cid, (cand, point, _) in found.items():
        status = "failed" if cand.get("error") else "default" if cid == default_id else "measured"
        if cid == default_id:
            comparison = Comparison(0.0 if point else None, False, "the baseline")
        elif status == "failed":
            comparison = Comparison(None, False, CRASHED if cand.get("crashed") else "failed to load")
        else:
            comparison = screened[cid]
        cap = capacities.get(cid)
        cap_cmp = None
        if capacities and status == "measured":
            cap_cmp = compare_capacity(cap, capacities.get(default_id))
        out.append(Evaluation(cid, cand["label"], status, point, comparison, cap, cap_cmp))
    return out


def _key(e: Evaluation, objective: str) -> tuple:
    usable = e.status != "failed" and e.point is not None
    in_budget = usable and e.point.in_budget
    if objective == "capacity":
        rate = (e.capacity or {}).get("max_rate")
        return (usable, rate is not None, rate or 0.0, in_budget, e.score)
    return (usable, in_budget, e.score)


def rank(evaluations: Sequence[Evaluation], objective: str = "throughput") -> list[Evaluation]:
    """Best first: within budget by the objective, then budget-breaking, then failed."""
    return sorted(evaluations, key=lambda e: _key(e, objective), reverse=True)


def nominee(evaluations: Sequence[Evaluation]) -> Evaluation | None:
    """The apparent winner, to be confirmed head-to-head: among measured candidates within budget
    and above the default, the one the screen gives the strongest evidence (smallest p; the
    highest median on a tie). On recorded noise this finds a real +30% more often than the highest
    median does (benchmarks/tune_verdict.py)."""
    found = [
        e
        for e in evaluations
        if e.status == "measured"
        and e.point is not None
        and e.point.in_budget
        and e.comparison.holm_p is not None
        and (e.comparison.change is None or e.comparison.change > 0)
    ]
    return min(found, key=lambda e: (e.comparison.p_value, -e.score), default=None)


def winner(evaluations: Sequence[Evaluation], objective: str = "throughput") -> Evaluation | None:
    """The best candidate that beats the default beyond noise in the screen (on the objective), or None.

    For the throughput objective this is not yet a winner: tune crowns only what a fresh
    head-to-head confirms (:mod:`axon.study.tune.confirm`)."""

    def beats(e: Evaluation) -> bool:
        if objective == "capacity":
            return e.capacity_comparison is not None and e.capacity_comparison.beats
        return e.comparison.beats

    for e in rank(evaluations, objective):
        if e.status == "measured" and beats(e):
            return e
    return None
