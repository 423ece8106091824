"""Each candidate's operating point, and whether it beats the default beyond the noise.

A candidate's **operating point** is the concurrency, among those measured, with the highest
median throughput whose median p50 and p99 are within the budgets. A candidate with no such
point breaks the budget: it is listed (at its highest-throughput point) but cannot win.

A candidate **beats the default** only when both were measured at least twice, its median is
higher, and either its repeat range lies wholly above the default's (non-overlapping ranges) or a
run-level Welch t-test on log throughput says p < alpha (:func:`axon.verdicts.gate.run_level_p`,
the test `axon compare` uses). Repeats of one run's requests are never the evidence: runs are.
Each candidate is compared with the default's runs from the same search stages, so both sides
were measured in the same interleaved rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from axon.records.repeats import Spread
from axon.verdicts.gate import DEFAULT_ALPHA, run_level_p
from axon.verdicts.slo import LatencyBudget

NO_WINNER = "no candidate beats the default beyond noise"
MIN_RUNS = 2  # noise can be judged only with at least two runs a side


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
    beats: bool
    reason: str
    p_value: float | None = None

    def as_dict(self) -> dict:
        return {"change": self.change, "beats_default": self.beats, "reason": self.reason, "p_value": self.p_value}


def compare(candidate: Point | None, default: Point | None, alpha: float = DEFAULT_ALPHA) -> Comparison:
    """Does ``candidate`` serve more than ``default`` within the budget, beyond the noise?"""
    if candidate is None:
        return Comparison(None, False, "not measured")
    if not candidate.in_budget:
        return Comparison(_change(candidate, default), False, "breaks the budget")
    if candidate.throughput.n < MIN_RUNS:
        return Comparison(_change(candidate, default), False, "one run: noise not judged")
    if default is None or not default.in_budget:
        # Nothing within budget to beat: the candidate wins only if it met the budget every time.
        if candidate.every_run_in_budget:
            return Comparison(None, True, "the default breaks the budget; this meets it in every run")
        return Comparison(None, False, "the default breaks the budget; this missed it in some runs")
    change = _change(candidate, default)
    if default.throughput.n < MIN_RUNS:
        return Comparison(change, False, "one default run: noise not judged")
    if change is None or change <= 0:
        return Comparison(change, False, "not above the default")
    if candidate.throughput.lo > default.throughput.hi:
        return Comparison(change, True, "ranges apart")
    p, _method = run_level_p(np.array(default.values), np.array(candidate.values))
    if p is not None and p < alpha:
        return Comparison(change, True, f"Welch t on log runs, p={p:.2g}", p)
    return Comparison(change, False, "within noise", p)


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
        }


def evaluate(candidates: Sequence[dict], runs: Sequence[dict], budget: Budget, capacities: dict[str, dict] | None = None,
             alpha: float = DEFAULT_ALPHA) -> list[Evaluation]:
    """Every candidate judged against the default (``candidates[0]``), in input order."""
    default_id = candidates[0]["id"]
    capacities = capacities or {}
    out = []
    for cand in candidates:
        mine = [r for r in runs if r["tune"]["candidate"] == cand["id"]]
        stages = {r["tune"]["stage"] for r in mine}
        base = [r for r in runs if r["tune"]["candidate"] == default_id and r["tune"]["stage"] in stages]
        point = operating_point(mine, budget)
        status = "failed" if cand.get("error") else "default" if cand["id"] == default_id else "measured"
        if cand["id"] == default_id:
            comparison = Comparison(0.0 if point else None, False, "the baseline")
        elif status == "failed":
            comparison = Comparison(None, False, "failed to load")
        else:
            comparison = compare(point, operating_point(base, budget), alpha)
        cap = capacities.get(cand["id"])
        cap_cmp = None
        if capacities and status == "measured":
            cap_cmp = compare_capacity(cap, capacities.get(default_id))
        out.append(Evaluation(cand["id"], cand["label"], status, point, comparison, cap, cap_cmp))
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


def winner(evaluations: Sequence[Evaluation], objective: str = "throughput") -> Evaluation | None:
    """The best candidate that beats the default beyond noise (on the objective), or None."""
    def beats(e: Evaluation) -> bool:
        if objective == "capacity":
            return e.capacity_comparison is not None and e.capacity_comparison.beats
        return e.comparison.beats

    for e in rank(evaluations, objective):
        if e.status == "measured" and beats(e):
            return e
    return None
