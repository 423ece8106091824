"""Repeats: a run is one sample, so cases are summarised as a median with its range.

Tables show ``median [min–max]`` over the repeats of a case, and a comparison whose ranges
overlap says "within noise" instead of printing a ratio that the noise could have made.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from axon.records.schema import add_counts, case_label

WITHIN_NOISE = "within noise"


@dataclass(frozen=True)
class Spread:
    """A statistic over repeats: median, min, max, and how many runs."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        values = [float(v) for v in values]
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def overlaps(self, other: Spread) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def format(self, spec: str = ",.0f") -> str:
        if self.n <= 1:
            return format(self.median, spec)
        return f"{self.median:{spec}} [{self.lo:{spec}}–{self.hi:{spec}}]"

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.lo, "max": self.hi, "n": self.n}


def case_key(record: dict) -> str:
    """Which runs are repeats of one case: same model, batching, load and study part."""
    load = record["load"]
    key = case_label(record)
    if load.get("rows_per_request", 1) != 1:
        key += f", {load['rows_per_request']} rows/request"
    part = (record.get("study") or {}).get("part")
    return f"{part}: {key}" if part else key


def group(runs: Iterable[dict], key: Callable[[dict], str] = case_key) -> dict[str, list[dict]]:
    """Runs grouped by case, in first-seen order."""
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return out


METRICS: dict[str, Callable[[dict], float]] = {
    "throughput_rps": lambda r: r["throughput_rps"],
    "p50_ms": lambda r: r["latency_ms"]["p50"],
    "p95_ms": lambda r: r["latency_ms"]["p95"],
    "p99_ms": lambda r: r["latency_ms"]["p99"],
}


def summarise(runs: list[dict]) -> dict[str, Spread]:
    """Each metric's spread over the runs (repeats of one case)."""
    return {name: Spread.of(get(r) for r in runs) for name, get in METRICS.items()}


@dataclass(frozen=True)
class Ratio:
    """A over B for one metric, from repeats of both: a number only beyond the noise."""

    a: Spread
    b: Spread
    ratios: Spread  # per interleaved pair (A_i / B_i), or medians' ratio when unpaired

    @property
    def within_noise(self) -> bool:
        return self.a.overlaps(self.b)

    @property
    def judged(self) -> bool:
        """Noise can be judged only with at least two runs a side."""
        return self.a.n >= 2 and self.b.n >= 2

    def format(self) -> str:
        if not self.judged:
            return f"{self.ratios.median:.2f}× (one run: noise not judged)"
        if self.within_noise:
            return WITHIN_NOISE
        return f"{self.ratios.median:.2f}×" + (f" [{self.ratios.lo:.2f}–{self.ratios.hi:.2f}]" if self.ratios.n > 1 else "")

    def as_dict(self) -> dict:
        return {
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "ratio": self.ratios.as_dict(),
            "within_noise": self.within_noise if self.judged else None,
        }


def ratio(a_runs: list[dict], b_runs: list[dict], metric: str = "throughput_rps") -> Ratio:
    get = METRICS[metric]
    a_values, b_values = [get(r) for r in a_runs], [get(r) for r in b_runs]
    if len(a_values) == len(b_values):
        pairs = [x / y for x, y in zip(a_values, b_values) if y]
    else:
        pairs = [statistics.median(a_values) / statistics.median(b_values)] if b_values and statistics.median(b_values) else []
    return Ratio(Spread.of(a_values), Spread.of(b_values), Spread.of(pairs))


def _pooled_apart(records: list[dict]) -> dict:
    """``throughput_basis`` (the weakest of the repeats') and ``latency_apart`` (merged where all are of one kind) over repeats."""
    from axon.records import answered, stats

    if not any("throughput_basis" in r for r in records):
        return {}  # records older than the field
    bases = {r.get("throughput_basis", answered.CLIENT) for r in records}
    basis = next(b for b in (answered.NONE, answered.SERVER, answered.CLIENT) if b in bases)
    aparts = [r["latency_apart"] for r in records if r.get("latency_apart")]
    apart = None
    if len({a["of"] for a in aparts}) == 1:
        if aparts[0]["of"] == "rejected":
            apart = answered.rejected([a["histogram"] for a in aparts])
        else:
            apart = answered.unresolved(
                stats.merge([a["histogram"] for a in aparts]), sum(a.get("unanswered", 0) for a in aparts)
            )
    return {"throughput_basis": basis, "latency_apart": apart}


def pool(records: list[dict]) -> dict:
    """One record for a case measured several times: the repeats kept whole under ``repeats``.

    Latency percentiles come from the merged histogram (exact); throughput is the median of
    the repeats' (a rate does not add up over runs one after another); counts add up; the case
    passed only if every repeat passed.
    """
    from axon.records import stats

    if len(records) == 1:
        return records[0]
    histogram = stats.merge([r["histogram"] for r in records])
    failures = add_counts(r["requests"]["failures"] for r in records)
    sent = sum(r["requests"]["sent"] for r in records)
    ok = sum(r["requests"]["ok"] for r in records)
    spread = summarise(records)
    reasons = [r["incomplete_reason"] for r in records if r["incomplete_reason"]]
    return {
        **records[-1],
        "repeat": None,
        "requests": {
            "sent": sent,
            "ok": ok,
            "failed": sent - ok,
            "timed_out": sum(r["requests"]["timed_out"] for r in records),
            "failures": failures,
            "failure_details": {
                code: text for r in reversed(records) for code, text in (r["requests"].get("failure_details") or {}).items()
            },
            "outages": sum(r["requests"].get("outages", 0) for r in records),
        },
        "throughput_rps": spread["throughput_rps"].median,
        "throughput_inferences_per_s": statistics.median(r["throughput_inferences_per_s"] for r in records),
        "latency_ms": stats.LatencySummary.of(histogram).as_dict(),
        "histogram": stats.encode(histogram),
        **_pooled_apart(records),
        "correctness": {
            **records[-1]["correctness"],
            "checked": sum(r["correctness"]["checked"] for r in records),
            "mismatches": sum(r["correctness"]["mismatches"] for r in records),
        },
        "client": {
            **records[-1]["client"],
            "client_bound": any(r["client"]["client_bound"] for r in records),
            "cores_per_process": [c for r in records for c in r["client"]["cores_per_process"]],
        },
        "complete": all(r["complete"] for r in records),
        "incomplete_reason": "; ".join(dict.fromkeys(reasons)) or None,
        "passed": all(r["passed"] for r in records),
        "verdicts": list(dict.fromkeys(v for r in records for v in r["verdicts"])),
        "over_repeats": {name: s.as_dict() for name, s in spread.items()},
        "repeats": records,
    }
