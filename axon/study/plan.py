"""The seed's whole study in one call: sweep, model comparison, capacity under the SLO.

Every case goes through :func:`axon.case.run_case` (the one measurement path) and is written
to the study file as soon as it finishes, so an interruption keeps everything measured so far.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from axon.case import Target, prepare, run_case, run_direct
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import load_rows, trained_feed
from axon.errors import AxonError
from axon.names import model_name
from axon.records import results
from axon.serving import backends
from axon.verdicts import slo

STUDY_FILE = "study.json"
SWEEP = (1, 4, 16, 64, 128, 256)
COMPARE_AT = 64
FALLBACK_P50_MS = 7.0
FALLBACK_P99_MS = 25.0
DIRECT_ROWS = (1, 16, 256)
CAPACITY_HALVINGS = 5  # the capacity search goes down to 1/32 of its start rate
SERVICE_ENGINES = ("native", "python")  # what a remote call costs the client, per engine (under --engine auto)


@dataclass(frozen=True)
class StudyPlan:
    sweep: tuple[int, ...] = SWEEP
    compare_at: int = COMPARE_AT
    models: tuple[str, ...] = ("v1", "v2")
    duration_s: float = 3.0
    warmup_s: float = 1.0
    repeat: int = 3  # a run is one sample: each case is measured this often, interleaved
    engine: str = "auto"  # closed loop and constant-rate open loop; Poisson arrivals always run on the python engine
    processes: int | str = "auto"
    capacity_start_rps: float = 500.0
    capacity_max_rps: float = 64_000.0
    capacity_bisect_steps: int = 2
    # The capacity search per arrival process: constant spacing on the native engine (the
    # server's limit, issue 19), and Poisson beside it on the python engine (labelled as such).
    capacity_arrivals: tuple[str, ...] = ("constant", "poisson")
    direct_rows: tuple[int, ...] = DIRECT_ROWS  # rows per request for direct vs service; () skips it
    direct_duration_s: float = 1.0  # short windows: this part has many small cases
    p50_budget_ms: float = FALLBACK_P50_MS
    p99_budget_ms: float = FALLBACK_P99_MS
    budgets_from: str = "defaults"
    max_server_memory: int | None = None  # the memory guard's limit in bytes (None: the default; 0: off)

    def closed_loop_template(self) -> LoadSpec:
        """A closed-loop case of this plan, as the sweep and A/B parts will run it."""
        return LoadSpec(
            model_name(self.models[0]),
            concurrency=self.compare_at,
            duration_s=self.duration_s,
            warmup_s=self.warmup_s,
            processes=self.processes,
            max_error_rate=0.0,
            engine=self.engine,
        )


def plan_with_budgets(plan: StudyPlan, pyproject: Path) -> StudyPlan:
    """Take the p50/p99 budgets for batching on from ``[[tool.axon.slo]]`` when there are some."""
    if not pyproject.is_file():
        return plan
    p50 = p99 = None
    for budget in slo.load_budgets(pyproject):
        if budget.covers(model_name("v1"), "on", "closed", plan.compare_at):
            p50 = p50 if p50 is not None else budget.limits.get("p50_ms")
            p99 = p99 if p99 is not None else budget.limits.get("p99_ms")
    return replace(
        plan, p50_budget_ms=p50 or plan.p50_budget_ms, p99_budget_ms=p99 or plan.p99_budget_ms, budgets_from=str(pyproject)
    )


def study_key(plan: StudyPlan, part: str) -> dict:
    """What a study adds to each record: which part of the study it is, and the plan's budgets."""
    return {
        "part": part,
        "plan": {
            "p50_budget_ms": plan.p50_budget_ms,
            "p99_budget_ms": plan.p99_budget_ms,
            "compare_at": plan.compare_at,
            "repeat": plan.repeat,
        },
    }


Log = Callable[[str], None]


class Study:
    def __init__(self, artifacts: Path, out: Path, plan: StudyPlan, log: Log = lambda s: print(s, file=sys.stderr)):
        self.artifacts, self.out, self.plan, self.log = artifacts, out, plan, log
        load_rows(artifacts)  # damaged artifacts are said now, before any server starts; each case reads its model's inputs
        self.runs: list[dict] = []
        self.writer = results.ResultsWriter(out / STUDY_FILE)  # checked now, before any server starts
        self.path = self.writer.path
        self._notices: set[str] = set()

    def notice(self, text: str) -> None:
        """Say ``text`` once per study, however many cases it applies to."""
        if text and text not in self._notices:
            self._notices.add(text)
            self.log(f"  notice: {text}")

    def said(self, text: str | None) -> None:
        """``text`` was said already (the CLI's preview): don't say it again."""
        if text:
            self._notices.add(text)

    def _case(self, server, batching: str, part: str, spec: LoadSpec, repeat: tuple[int, int] | None = None) -> dict:
        target = Target.of(server, batching, self.plan.max_server_memory)
        feed, dataset = trained_feed(self.artifacts, spec.model)
        record = run_case(spec, target, feed, self.artifacts / "models" / spec.model / "model.onnx", dataset, repeat=repeat)
        self._keep(record, part)
        return record

    def _keep(self, record: dict, part: str) -> None:
        """Tag, save (after every case: nothing measured is lost) and log one record."""
        record["study"] = study_key(self.plan, part)
        self.runs.append(record)
        self.path = self.writer.save(self.runs)
        repeat = (record["repeat"]["index"], record["repeat"]["of"]) if record.get("repeat") else None
        lat = record["latency_ms"]
        flag = "" if record["passed"] else "  [" + "; ".join(record["verdicts"] or [record["incomplete_reason"] or ""]) + "]"
        rep = f" #{repeat[0] + 1}" if repeat else ""
        if record["load"].get("rows_per_request", 1) != 1:
            rep = f", {record['load']['rows_per_request']} rows{rep}"
        engine = record["engine"]["name"]
        self.log(
            f"  {part:<9} {slo.case_label(record) + rep:<58} {engine:<6} {record['throughput_rps']:>9,.0f} req/s  p50 {lat['p50']:7.2f}  p99 {lat['p99']:7.2f} ms{flag}"
        )
        self.notice(record["engine"].get("notice"))  # once per study: every Poisson case would say the same
        if not record["complete"]:
            raise AxonError(f"study stopped: run incomplete ({record['incomplete_reason']}); partial results in {self.path}")

    def _spec(self, version: str, **load) -> LoadSpec:
        p = self.plan
        return LoadSpec(
            model_name(version),
            duration_s=p.duration_s,
            warmup_s=p.warmup_s,
            processes=p.processes,
            max_error_rate=0.0,
            engine=p.engine,
            **load,
        )

    def _interleaved(self, servers: dict, part: str, spec: LoadSpec) -> None:
        """Every repeat runs ON then OFF, both servers up: drift over the study hits both alike."""
        n = self.plan.repeat
        for index in range(n):
            for batching, server in servers.items():
                self._case(server, batching, part, spec, (index, n) if n > 1 else None)

    def run(self) -> list[dict]:
        p = self.plan
        with contextlib.ExitStack() as stack:
            servers = {}
            for batching in ("on", "off"):
                self.log(f"starting embedded Triton (batching {batching})…")
                server = stack.enter_context(
                    backends.make_server(
                        "embedded",
                        batching=batching,
                        artifacts=self.artifacts,
                        log_path=self.out / f"tritonserver-batching-{batching}.log",
                    )
                )
                self.log(f"batching {batching}: embedded Triton {server.version} ready in {server.startup_s:.1f} s")
                servers[batching] = server
            sweep_model = p.models[0]  # v1 unless --models says otherwise
            for concurrency in p.sweep:
                self._interleaved(servers, "sweep", self._spec(sweep_model, concurrency=concurrency))
            for version in p.models:
                if version != sweep_model or p.compare_at not in p.sweep:
                    self._interleaved(servers, "models", self._spec(version, concurrency=p.compare_at))
            if p.direct_rows:
                self.direct_vs_service(servers["on"])
            arrivals_searched = self.capacity_arrivals()
            for batching, server in servers.items():
                for version in p.models:
                    for arrivals in arrivals_searched:
                        self.capacity(server, batching, version, arrivals)
        return self.runs

    def service_engines(self) -> tuple[str, ...]:
        """The engines of direct vs service's service cases: both clients under ``auto``, else ``--engine``'s.

        Under ``auto``, the native client runs only where auto would pick it (h2load found);
        otherwise its cases are left out, said once, rather than forced and failing mid-study.
        """
        p = self.plan
        if p.engine != "auto":
            if p.engine == "python":
                self.notice(
                    "direct vs service: --engine python, so the service cases run on the python client only (no native client column)"
                )
            return (p.engine,)
        choice = prepare(self._spec(p.models[0], concurrency=1)).choice
        if choice.name != "native":
            self.notice(choice.notice or "")  # why (once: the sweep's first case has usually said it)
            self.notice(
                "direct vs service: the native client's cases are left out, as auto fell back to python; the python client's run"
            )
            return tuple(e for e in SERVICE_ENGINES if e != "native")
        return SERVICE_ENGINES

    def direct_vs_service(self, server) -> None:
        """The same model in-process and through Triton (batching on, c=1), per rows per request.

        Direct: onnxruntime with one thread in this process. Service: one request in flight, on
        each engine (a native client and a Python one cost the client very different CPU), all
        interleaved repeat by repeat. The report turns these records into client CPU per row and
        the break-even model cost. ``--engine`` picks the service engine (:meth:`service_engines`).
        """
        p = self.plan
        n = p.repeat
        engines = self.service_engines()
        for version in p.models:
            name = model_name(version)
            onnx_path = self.artifacts / "models" / name / "model.onnx"
            feed, dataset = trained_feed(self.artifacts, name)
            for rows in p.direct_rows:
                for index in range(n):
                    repeat = (index, n) if n > 1 else None
                    record = run_direct(
                        name, onnx_path, feed, rows, 1, p.direct_duration_s, p.warmup_s / 2, dataset, repeat=repeat
                    )
                    self._keep(record, "direct")
                    for engine in engines:
                        spec = replace(
                            self._spec(version, concurrency=1, rows_per_request=rows),
                            engine=engine,
                            duration_s=p.direct_duration_s,
                            warmup_s=p.warmup_s / 2,
                        )
                        self._case(server, "on", "service", spec, repeat)

    def capacity_arrivals(self) -> tuple[str, ...]:
        """The arrival processes the capacity search runs: Poisson has no native engine, so
        ``--engine native`` leaves it out (said once) rather than running it on python."""
        p = self.plan
        if p.engine == "native" and "poisson" in p.capacity_arrivals:
            self.notice(
                "capacity with Poisson arrivals is left out: --engine native, and h2load has no Poisson mode (--engine auto runs it on python)"
            )
            return tuple(a for a in p.capacity_arrivals if a != "poisson")
        return p.capacity_arrivals

    def capacity(self, server, batching: str, version: str, distribution: str = "constant") -> float | None:
        """Highest offered rate whose p99 stays within budget: double, bisect, confirm.

        ``distribution``: constant spacing runs on the plan's engine (``auto``: native, h2load
        keeps the schedule up to the server's limit); Poisson on the python engine, since h2load
        has no Poisson mode (below ~3,500/s on our 2 cores that client falls behind first):
        ``auto`` picks it, and ``--engine native`` leaves Poisson out (:meth:`capacity_arrivals`).

        A failing rate is retried once during the search (one noisy window on a shared machine
        should not end it); at the end the boundary, the best passing rate and the first failing
        one, is measured until each has ``repeat`` runs, and a rate holds only if at least half
        of its runs passed (see :func:`capacity_table`).
        """
        p = self.plan

        engine = p.engine

        def one(rate: float) -> bool:
            r = self._case(
                server, batching, "capacity", replace(self._spec(version, rate=rate, distribution=distribution), engine=engine)
            )
            return within_budget(r, p.p99_budget_ms)

        def ok(rate: float) -> bool:
            return one(rate) or one(rate)

        good, bad = search_capacity(ok, p.capacity_start_rps, p.capacity_max_rps, p.capacity_bisect_steps)

        def mine(r: dict) -> bool:
            return (
                r["model"] == model_name(version) and r["batching"] == batching and r["load"].get("distribution") == distribution
            )

        for boundary in (good, bad):
            if boundary is None:
                continue
            done = sum(1 for r in self.runs if r["study"]["part"] == "capacity" and mine(r) and r["load"]["rate"] == boundary)
            for _ in range(p.repeat - done):
                one(boundary)
        table = capacity_table([r for r in self.runs if mine(r)], p.p99_budget_ms)
        return next(iter(table.values()))["max_rate"] if table else None


def search_capacity(
    ok: Callable[[float], bool], start: float, highest: float, bisect_steps: int
) -> tuple[float | None, float | None]:
    """The highest rate ``ok`` holds and the lowest it fails, by doubling from ``start``, then bisecting.

    Below the start it halves until a rate holds (a compute-bound model holds tens or hundreds
    of requests per second, not thousands), at most CAPACITY_HALVINGS times.
    """
    good, bad = None, None
    rate = start
    while rate <= highest:
        if ok(rate):
            good, rate = rate, rate * 2
        else:
            bad = rate
            break
    for _ in range(CAPACITY_HALVINGS if good is None else 0):
        rate /= 2
        if ok(rate):
            good = rate
            break
        bad = rate
    if good is not None and bad is not None:
        for _ in range(bisect_steps):
            middle = (good + bad) / 2
            if ok(middle):
                good = middle
            else:
                bad = middle
    return good, bad


def within_budget(r: dict, p99_budget_ms: float) -> bool:
    # A run where the client fell behind its schedule can't vouch for that rate.
    return r["passed"] and r["latency_ms"]["p99"] <= p99_budget_ms


def arrivals_label(record: dict) -> str:
    """The arrival process and the engine that offered it, e.g. ``constant (native)``."""
    return f"{record['load'].get('distribution') or 'constant'} ({record['engine']['name']})"


def capacity_table(runs: list[dict], p99_budget_ms: float) -> dict[tuple[str, str, str], dict]:
    """(model, batching, arrivals) -> highest holding rate, first failing rate, and what stopped the search.

    ``arrivals`` is :func:`arrivals_label`: constant spacing (native) and Poisson (python) are
    searched apart. A rate holds if at least half of its runs passed (a failure retried once and
    then passed holds; a confirmed boundary needs a majority of its repeats); it fails otherwise.
    """
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in runs:
        if r.get("study", {}).get("part") == "capacity":
            groups.setdefault((r["model"], r["batching"], arrivals_label(r)), []).append(r)
    out = {}
    for key, rs in groups.items():
        by_rate: dict[float, list[dict]] = {}
        for r in rs:
            by_rate.setdefault(r["load"]["rate"], []).append(r)
        holds = {rate: 2 * sum(within_budget(r, p99_budget_ms) for r in group) >= len(group) for rate, group in by_rate.items()}
        entry = {
            "max_rate": None,
            "p99_at_max": None,
            "runs_at_max": None,
            "first_fail": None,
            "runs_at_fail": None,
            "stopped_by": None,
        }
        passing = sorted(rate for rate, held in holds.items() if held)
        if passing:
            best = passing[-1]
            group = by_rate[best]
            entry.update(
                max_rate=best,
                p99_at_max=statistics.median(r["latency_ms"]["p99"] for r in group),
                runs_at_max=f"{sum(within_budget(r, p99_budget_ms) for r in group)}/{len(group)}",
            )
        failing = sorted(rate for rate, held in holds.items() if not held and (not passing or rate > passing[-1]))
        if failing:
            first = by_rate[failing[0]]
            # Say whether the server's latency or the client's schedule ended the search.
            behind = sum(bool((r.get("schedule") or {}).get("behind")) for r in first)
            entry.update(
                first_fail=failing[0], runs_at_fail=f"{sum(within_budget(r, p99_budget_ms) for r in first)}/{len(first)}"
            )
            failed_run = next(r for r in first if not within_budget(r, p99_budget_ms))
            entry["stopped_by"] = (
                "client fell behind (client-limited)"
                if 2 * behind >= len(first)
                else "p99 over budget"
                if failed_run["passed"]
                else "; ".join(failed_run["verdicts"])
            )
        out[key] = entry
    return out
