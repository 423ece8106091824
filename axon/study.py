"""The seed's whole study in one call: sweep, model comparison, capacity under the SLO.

Every case goes through :func:`axon.bench.run_case` (the one measurement path) and is written
to the study file as soon as it finishes, so an interruption keeps everything measured so far.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from axon import backends, results, slo
from axon.bench import Target, run_case
from axon.errors import AxonError
from axon.loadgen import LoadSpec
from axon.names import model_name
from axon.payloads import load_rows

STUDY_FILE = "study.json"
SWEEP = (1, 4, 16, 64, 128, 256)
COMPARE_AT = 64
FALLBACK_P50_MS = 7.0
FALLBACK_P99_MS = 25.0


@dataclass(frozen=True)
class StudyPlan:
    sweep: tuple[int, ...] = SWEEP
    compare_at: int = COMPARE_AT
    models: tuple[str, ...] = ("v1", "v2")
    duration_s: float = 5.0
    warmup_s: float = 1.0
    processes: int | str = "auto"
    capacity_start_rps: float = 500.0
    capacity_max_rps: float = 64_000.0
    capacity_bisect_steps: int = 2
    p50_budget_ms: float = FALLBACK_P50_MS
    p99_budget_ms: float = FALLBACK_P99_MS
    budgets_from: str = "defaults"


def plan_with_budgets(plan: StudyPlan, pyproject: Path) -> StudyPlan:
    """Take the p50/p99 budgets for batching on from ``[[tool.axon.slo]]`` when there are some."""
    if not pyproject.is_file():
        return plan
    probe = {"model": model_name("v1"), "batching": "on", "load": {"mode": "closed", "concurrency": plan.compare_at}}
    p50 = p99 = None
    for budget in slo.load_budgets(pyproject):
        if budget.applies_to(probe):
            p50 = p50 if p50 is not None else budget.limits.get("p50_ms")
            p99 = p99 if p99 is not None else budget.limits.get("p99_ms")
    return replace(plan, p50_budget_ms=p50 or plan.p50_budget_ms, p99_budget_ms=p99 or plan.p99_budget_ms, budgets_from=str(pyproject))


Log = Callable[[str], None]


class Study:
    def __init__(self, artifacts: Path, out: Path, plan: StudyPlan, log: Log = lambda s: print(s, file=sys.stderr)):
        self.artifacts, self.out, self.plan, self.log = artifacts, out, plan, log
        self.features, self.dataset = load_rows(artifacts)
        self.runs: list[dict] = []
        self.path = out / STUDY_FILE

    def _case(self, server, batching: str, part: str, spec: LoadSpec) -> dict:
        target = Target(server.endpoints, server.backend, server.version, batching)
        record = run_case(spec, target, self.features, self.artifacts / "models" / spec.model / "model.onnx", self.dataset)
        record["study"] = {"part": part, "plan": {"p50_budget_ms": self.plan.p50_budget_ms, "p99_budget_ms": self.plan.p99_budget_ms, "compare_at": self.plan.compare_at}}
        self.runs.append(record)
        results.write_results(self.path, self.runs)  # after every case: nothing measured is lost
        lat = record["latency_ms"]
        flag = "" if record["passed"] else "  [" + "; ".join(record["verdicts"] or [record["incomplete_reason"] or ""]) + "]"
        self.log(f"  {part:<9} {slo.case_label(record):<55} {record['throughput_rps']:>9,.0f} req/s  p50 {lat['p50']:7.2f}  p99 {lat['p99']:7.2f} ms{flag}")
        if not record["complete"]:
            raise AxonError(f"study stopped: run incomplete ({record['incomplete_reason']}); partial results in {self.path}")
        return record

    def _spec(self, version: str, **load) -> LoadSpec:
        p = self.plan
        return LoadSpec(model_name(version), duration_s=p.duration_s, warmup_s=p.warmup_s, processes=p.processes, max_error_rate=0.0, **load)

    def run(self) -> list[dict]:
        p = self.plan
        for batching in ("on", "off"):
            with backends.make_server("embedded", batching=batching, artifacts=self.artifacts, log_path=self.out / f"tritonserver-batching-{batching}.log") as server:
                self.log(f"batching {batching}: embedded Triton {server.version} ready in {server.startup_s:.1f} s")
                for concurrency in p.sweep:
                    self._case(server, batching, "sweep", self._spec("v1", concurrency=concurrency))
                for version in p.models:
                    if version != "v1" or p.compare_at not in p.sweep:
                        self._case(server, batching, "models", self._spec(version, concurrency=p.compare_at))
                for version in p.models:
                    self.capacity(server, batching, version)
        return self.runs

    def capacity(self, server, batching: str, version: str) -> float | None:
        """Highest offered Poisson rate whose p99 stays within budget: double, then bisect."""
        p = self.plan

        def one(rate: float) -> bool:
            r = self._case(server, batching, "capacity", self._spec(version, rate=rate, distribution="poisson"))
            # A run where the client fell behind its schedule can't vouch for that rate.
            return r["passed"] and r["latency_ms"]["p99"] <= p.p99_budget_ms

        def ok(rate: float) -> bool:
            # A failure is confirmed by a second run: one noisy window on a shared machine
            # should not end the search (both runs are recorded and reported).
            return one(rate) or one(rate)

        good, bad = None, None
        rate = p.capacity_start_rps
        while rate <= p.capacity_max_rps:
            if ok(rate):
                good, rate = rate, rate * 2
            else:
                bad = rate
                break
        if good is not None and bad is not None:
            for _ in range(p.capacity_bisect_steps):
                middle = (good + bad) / 2
                if ok(middle):
                    good = middle
                else:
                    bad = middle
        return good


def capacity_table(runs: list[dict], p99_budget_ms: float) -> dict[tuple[str, str], dict]:
    """(model, batching) -> highest passing rate, first failing rate, and what stopped the search.

    A rate passes if any of its runs passed (the search retries a failure once); it fails if
    all of its runs failed.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        if r.get("study", {}).get("part") == "capacity":
            groups.setdefault((r["model"], r["batching"]), []).append(r)

    def within(r: dict) -> bool:
        return r["passed"] and r["latency_ms"]["p99"] <= p99_budget_ms

    out = {}
    for key, rs in groups.items():
        passing = [r for r in rs if within(r)]
        passed_rates = {r["load"]["rate"] for r in passing}
        failing = sorted((r for r in rs if r["load"]["rate"] not in passed_rates), key=lambda r: r["load"]["rate"])
        best = max(passing, key=lambda r: (r["load"]["rate"], -r["latency_ms"]["p99"]), default=None)
        entry = {"max_rate": None, "p99_at_max": None, "first_fail": None, "stopped_by": None}
        if best is not None:
            entry.update(max_rate=best["load"]["rate"], p99_at_max=best["latency_ms"]["p99"])
        if failing:
            first = failing[0]
            # Say whether the server's latency or the client's schedule ended the search.
            behind = (first.get("schedule") or {}).get("behind")
            entry["first_fail"] = first["load"]["rate"]
            entry["stopped_by"] = "client fell behind (client-limited)" if behind else "p99 over budget" if first["passed"] else "; ".join(first["verdicts"])
        out[key] = entry
    return out
