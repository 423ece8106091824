"""The search: interleaved rounds over candidates, brute force or coordinate search.

A **stage** measures a set of candidates in interleaved rounds: every candidate is loaded and
measured once, then every candidate again, ``repeat`` times, so drift over the minutes of a stage
hits all of them alike. The default is in every stage: it is the baseline each candidate is
compared with, from the same rounds.

A candidate's **concurrency sweep** is decided the first time it is measured: it walks up the
concurrencies and stops early when throughput gains less than :data:`MIN_GAIN` over the previous
point, or when the point breaks the latency budget (more in flight only queues longer). Later
rounds measure exactly the concurrencies the first one reached, so every point has the same
number of repeats.

**Brute force** measures the whole grid in one stage when it has at most :data:`BRUTE_FORCE_MAX`
candidates. Larger spaces get a **coordinate search** from the default (as Model Analyzer's quick
mode does): one stage per knob, varying that knob around the incumbent; the incumbent moves only
to a candidate that beats it beyond noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from axon.offline.repository import ServingOptions
from axon.study.tune import space as space_mod
from axon.study.tune import verdict
from axon.study.tune.control import LoadResult

MIN_GAIN = 0.05  # stop a concurrency sweep when throughput gains less than this
BRUTE_FORCE_MAX = 12
STRATEGIES = ("auto", "brute", "coordinate")

Load = Callable[[ServingOptions], LoadResult]
Measure = Callable[[ServingOptions, int, str], dict]  # (loaded candidate, concurrency, label) -> run record
Log = Callable[[str], None]


@dataclass
class Plan:
    concurrencies: tuple[int, ...]
    repeat: int
    budget: verdict.Budget
    strategy: str = "auto"
    alpha: float = verdict.DEFAULT_ALPHA  # the screen's level, for the coordinate search's moves too


@dataclass
class Search:
    """Runs a search over ``space`` with the given loader and measurer; candidates and runs grow as it goes."""

    space: space_mod.Space
    plan: Plan
    load: Load
    measure: Measure
    log: Log = lambda s: None
    on_change: Callable[[], None] = lambda: None  # after every load and run: save what is known
    candidates: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    strategy: str = ""
    last_loaded: str | None = None
    confirm_runs: list[dict] = field(default_factory=list)  # the head-to-head's, apart from the screen's

    def __post_init__(self) -> None:
        self._by_options: dict[ServingOptions, dict] = {}
        self.candidate(self.space.seed)  # c0: the default, always a candidate and the baseline

    def candidate(self, options: ServingOptions) -> dict:
        if options not in self._by_options:
            cand = {
                "id": f"c{len(self.candidates)}",
                "label": space_mod.label(options, self.space.batching),
                "knobs": space_mod.knobs_of(options),
                "default": not self.candidates,
                "error": None,
                "crashed": False,  # brought the server down twice while loading (the error says how)
                "loads": [],
                "sweep": None,
                "sweep_stop": None,
            }
            self.candidates.append(cand)
            self._by_options[options] = cand
        return self._by_options[options]

    def options_of(self, cid: str) -> ServingOptions:
        return next(o for o, c in self._by_options.items() if c["id"] == cid)

    # ------------------------------------------------------------------ strategies
    def run(self) -> None:
        strategy = self.plan.strategy
        if strategy == "auto":
            strategy = "brute" if self.space.size <= BRUTE_FORCE_MAX else "coordinate"
        self.strategy = strategy
        if strategy == "brute":
            self.stage(self.space.grid(), 0)
        else:
            self.coordinate()

    def coordinate(self) -> None:
        seed = self.space.seed
        incumbent = seed
        for stage, (knob, values) in enumerate(self.space.values.items()):
            members = list(dict.fromkeys([seed, incumbent, *(self.space.with_knob(incumbent, knob, v) for v in values)]))
            if len(members) < 2:
                continue
            self.log(
                f"stage {stage + 1}/{len(self.space.values)}: {knob} around {space_mod.label(incumbent, self.space.batching)}"
            )
            self.stage(members, stage)
            incumbent = self._best_of_stage(members, incumbent, stage)

    def _best_of_stage(self, members: list[ServingOptions], incumbent: ServingOptions, stage: int) -> ServingOptions:
        def point(options: ServingOptions):
            cid = self.candidate(options)["id"]
            return verdict.operating_point(
                [r for r in self.runs if r["tune"]["candidate"] == cid and r["tune"]["stage"] == stage], self.plan.budget
            )

        base = point(incumbent)
        measured = {self.candidate(o)["id"]: (o, point(o)) for o in members if o != incumbent and not self.candidate(o)["error"]}
        noise = verdict.pooled_noise([p.values for _, p in [*measured.values(), (incumbent, base)] if p is not None])
        # The same screen as the final verdict (corrected for the stage's candidates): the search
        # follows only a gain it can tell from noise; the winner is still confirmed head-to-head.
        screened = verdict.screen({cid: verdict.compare(p, base, noise) for cid, (_, p) in measured.items()}, self.plan.alpha)
        contenders = [(measured[cid][1].throughput.median, measured[cid][0]) for cid, c in screened.items() if c.beats]
        if contenders:
            best = max(contenders, key=lambda t: t[0])[1]
            self.log(f"  incumbent now {space_mod.label(best, self.space.batching)} (beats the previous beyond noise)")
            return best
        return incumbent

    # ------------------------------------------------------------------ the head-to-head
    def head_to_head(self, nominee: str, c_default: int, c_nominee: int, pairs: int) -> tuple[list[dict], list[dict]]:
        """``pairs`` interleaved pairs, the default then the nominee, each loaded afresh and run at its
        own operating point's concurrency. Returns (default runs, nominee runs), pair by pair; a
        load that fails ends it early (the pairs measured so far are kept)."""
        default_id = self.candidates[0]["id"]
        sides = ((default_id, c_default, []), (nominee, c_nominee, []))
        self.log(f"head-to-head: {nominee} against the default {default_id}, {pairs} interleaved pairs")
        for k in range(pairs):
            for cid, c, out in sides:
                cand = next(x for x in self.candidates if x["id"] == cid)
                options = self.options_of(cid)
                result = self.load(options)
                cand["loads"].append(
                    {"stage": "confirm", "round": k, "ok": result.ok, "seconds": result.seconds, "error": result.error}
                )
                if not result.ok:
                    self.log(f"  {cid} {cand['label']}: failed to load in the head-to-head: {result.error}")
                    return sides[0][2][: len(sides[1][2])], sides[1][2]
                self.last_loaded = cid
                label = f"{cid} {cand['label']}, c={c}, pair {k + 1}/{pairs}"
                record = self.measure(options, c, label)
                record["tune"] = {
                    "candidate": cid,
                    "label": cand["label"],
                    "stage": "confirm",
                    "round": k,
                    "load_s": result.seconds,
                }
                out.append(record)
                self.confirm_runs.append(record)
                self.on_change()
                lat = record["latency_ms"]
                self.log(
                    f"  {label:<64} {record['throughput_rps']:>9,.0f} req/s  p50 {lat['p50']:6.2f}  p99 {lat['p99']:6.2f} ms"
                )
        return sides[0][2], sides[1][2]

    # ------------------------------------------------------------------ one stage
    def stage(self, members: list[ServingOptions], stage: int) -> None:
        """``repeat`` interleaved rounds over ``members`` (the default first)."""
        n = self.plan.repeat
        for rnd in range(n):
            self.log(f"round {rnd + 1}/{n}" + (f" (stage {stage + 1})" if self.strategy == "coordinate" else ""))
            for options in members:
                cand = self.candidate(options)
                if cand["error"]:
                    continue  # refused once, refused again: Triton judged the config, not the moment
                result = self.load(options)
                cand["loads"].append(
                    {"stage": stage, "round": rnd, "ok": result.ok, "seconds": result.seconds, "error": result.error}
                )
                self.on_change()
                if not result.ok:
                    cand["error"], cand["crashed"] = result.error, result.crashed
                    self.log(
                        f"  {cand['id']} {cand['label']}: {'' if result.crashed else 'failed to load: '}{result.error}; the search goes on"
                    )
                    continue
                self.last_loaded = cand["id"]
                if cand["sweep"] is None:
                    self._first_sweep(cand, options, stage, rnd, result.seconds)
                else:
                    for c in cand["sweep"]:
                        self._one(cand, options, c, stage, rnd, result.seconds)

    def _first_sweep(self, cand: dict, options: ServingOptions, stage: int, rnd: int, load_s: float) -> None:
        sweep: list[int] = []
        previous = None
        stop = "end of the list"
        for c in sorted(self.plan.concurrencies):
            record = self._one(cand, options, c, stage, rnd, load_s)
            sweep.append(c)
            lat = record["latency_ms"]
            if not self.plan.budget.holds(lat["p50"], lat["p99"]):
                stop = f"over budget at c={c}"
                break
            if previous is not None and record["throughput_rps"] < previous * (1 + MIN_GAIN):
                stop = f"gain < {MIN_GAIN:.0%} at c={c}"
                break
            previous = record["throughput_rps"]
        cand["sweep"], cand["sweep_stop"] = sweep, stop

    def _one(self, cand: dict, options: ServingOptions, c: int, stage: int, rnd: int, load_s: float) -> dict:
        label = f"{cand['id']} {cand['label']}, c={c}, round {rnd + 1}/{self.plan.repeat}"
        record = self.measure(options, c, label)
        record["tune"] = {"candidate": cand["id"], "label": cand["label"], "stage": stage, "round": rnd, "load_s": load_s}
        self.runs.append(record)
        self.on_change()
        lat = record["latency_ms"]
        self.log(f"  {label:<64} {record['throughput_rps']:>9,.0f} req/s  p50 {lat['p50']:6.2f}  p99 {lat['p99']:6.2f} ms")
        return record
