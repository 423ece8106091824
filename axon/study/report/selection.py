"""Which runs a table or plot describes: a study's parts, the main model, the A/B's concurrency, the budgets.

In a study's file each run carries its part; in any other axon results file (bench, sweep, A/B)
closed-loop runs stand for the sweep and open-loop runs for the capacity search, so every table
and plot asks these functions, never the records, which runs apply to it.
"""

from __future__ import annotations

import statistics

from axon.names import DEFAULT_MODEL
from axon.study.plan import COMPARE_AT, FALLBACK_P50_MS, FALLBACK_P99_MS

MODES = ("on", "off", None)  # batching; None: an external server's unstated mode


def is_study(runs: list[dict]) -> bool:
    return any("study" in r for r in runs)


def study_part(runs: list[dict], part: str) -> list[dict]:
    """A study's part; in any other file (bench, sweep, A/B) closed-loop runs count as the
    sweep and open-loop runs as the rate runs, so each plot finds what applies to it."""
    if is_study(runs):
        return [r for r in runs if r.get("study", {}).get("part") == part]
    mode = {"sweep": "closed", "capacity": "open"}.get(part)
    return [r for r in runs if r["load"]["mode"] == mode]


def main_model(runs: list[dict]) -> str:
    """The model the sweep, A/B and CDF describe: v1 when present (the study's), else the first."""
    models = [r["model"] for r in runs]
    return DEFAULT_MODEL if DEFAULT_MODEL in models else models[0]


CLOSED_PARTS = ("sweep", "models")  # the closed-loop comparisons (not direct-vs-service's c=1 cases)


def sweep_by_concurrency(runs: list[dict], batching: str, model: str = DEFAULT_MODEL) -> dict[int, list[dict]]:
    """concurrency -> the sweep's repeats at it, in concurrency order."""
    out: dict[int, list[dict]] = {}
    for r in sorted(
        (r for r in study_part(runs, "sweep") if r["batching"] == batching and r["model"] == model),
        key=lambda r: r["load"]["concurrency"],
    ):
        out.setdefault(r["load"]["concurrency"], []).append(r)
    return out


def closed_repeats(runs: list[dict], model: str, batching: str, concurrency: int) -> list[dict]:
    """Every closed-loop repeat of one case (in a study: the sweep or the model comparison)."""
    study = is_study(runs)

    def comparable(r: dict) -> bool:
        if study:
            return r.get("study", {}).get("part") in CLOSED_PARTS
        return (r.get("engine") or {}).get("name") != "direct"  # in-process runs have no server to compare

    return [
        r
        for r in runs
        if r["model"] == model
        and r["batching"] == batching
        and r["load"]["mode"] == "closed"
        and r["load"]["concurrency"] == concurrency
        and comparable(r)
    ]


def median_of(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def study_plan(runs: list[dict]) -> dict:
    return next((r["study"]["plan"] for r in runs if "study" in r), {})


def budgets(runs: list[dict]) -> tuple[float, float]:
    plan = study_plan(runs)
    return plan.get("p50_budget_ms", FALLBACK_P50_MS), plan.get("p99_budget_ms", FALLBACK_P99_MS)


def compare_at(runs: list[dict], model: str | None = None) -> int:
    """The concurrency of the A/B, CDF and model comparisons: the study's (64 in the standard
    study); in other files the highest one with both batching modes, else the highest measured."""
    plan = study_plan(runs)
    if "compare_at" in plan:
        return plan["compare_at"]
    closed = [r for r in runs if r["load"]["mode"] == "closed" and r["model"] == (model or main_model(runs))]
    both = {r["load"]["concurrency"] for r in closed if r["batching"] == "on"} & {
        r["load"]["concurrency"] for r in closed if r["batching"] == "off"
    }
    found = both or {r["load"]["concurrency"] for r in closed}
    return max(found) if found else COMPARE_AT
