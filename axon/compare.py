"""Compare saved runs and gate on regressions that are both significant and large.

Reads pytest-benchmark JSON (``--benchmark-json``/``--benchmark-autosave``; axon's record is in
each case's extra_info) and axon's own results JSON. The significance test is a two-sided
Mann-Whitney U on the latency samples, computed exactly from the HDR histograms with the
tie correction, so it needs no raw samples and works across merged runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axon import stats
from axon.errors import AxonError
from axon.slo import case_label

DEFAULT_THRESHOLD = 0.10
DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class Case:
    name: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    histogram: str


def load_cases(path: Path) -> dict[str, Case]:
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AxonError(f"cannot read {path}: {exc}") from None
    records: list[tuple[str, dict]] = []
    if "benchmarks" in payload:  # pytest-benchmark
        for bench in payload["benchmarks"]:
            record = bench.get("extra_info", {}).get("axon")
            if record:
                records.append((bench["name"], record))
    elif "runs" in payload:  # axon results
        records = [(case_label(r), r) for r in payload["runs"]]
    else:
        raise AxonError(f"{path}: neither a pytest-benchmark JSON nor axon results")
    cases = {}
    for name, r in records:
        if not r.get("histogram"):
            continue
        lat = r["latency_ms"]
        cases[name] = Case(name, lat["p50"], lat["p99"], lat["mean"], r["throughput_rps"], r["histogram"])
    if not cases:
        raise AxonError(f"{path}: no axon measurements in it")
    return cases


def mann_whitney(old_hist: str, new_hist: str) -> tuple[float, float]:
    """(p-value two-sided, probability that a new latency exceeds an old one)."""
    old_v, old_c = stats.histogram_values_seconds(stats.decode(old_hist))
    new_v, new_c = stats.histogram_values_seconds(stats.decode(new_hist))
    values = np.array(sorted(set(old_v) | set(new_v)))
    a = np.zeros(len(values))
    b = np.zeros(len(values))
    a[np.searchsorted(values, old_v)] += old_c
    b[np.searchsorted(values, new_v)] += new_c
    n1, n2 = a.sum(), b.sum()
    if n1 == 0 or n2 == 0:
        return 1.0, 0.5
    t = a + b
    big_n = n1 + n2
    avg_rank = np.cumsum(t) - t + (t + 1) / 2.0
    u_new = float((b * avg_rank).sum() - n2 * (n2 + 1) / 2.0)
    mean = n1 * n2 / 2.0
    tie = float(((t**3 - t).sum()) / (big_n * (big_n - 1))) if big_n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((big_n + 1) - tie)
    if var <= 0:
        return 1.0, 0.5
    z = (u_new - mean) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2)), u_new / (n1 * n2)


@dataclass(frozen=True)
class Change:
    name: str
    old: Case
    new: Case
    p_value: float
    prob_slower: float
    regression: bool
    improvement: bool

    def relative(self, attr: str) -> float:
        before = getattr(self.old, attr)
        return (getattr(self.new, attr) - before) / before if before else float("nan")


def compare(old: dict[str, Case], new: dict[str, Case], metric: str = "p50_ms", threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA) -> list[Change]:
    """Cases present in both. A regression: significantly slower AND ``metric`` worse by > threshold."""
    changes = []
    for name in sorted(set(old) & set(new)):
        p, prob = mann_whitney(old[name].histogram, new[name].histogram)
        rel = (getattr(new[name], metric) - getattr(old[name], metric)) / getattr(old[name], metric)
        significant = p < alpha
        changes.append(Change(name, old[name], new[name], p, prob, significant and prob > 0.5 and rel > threshold, significant and prob < 0.5 and rel < -threshold))
    return changes


def table(changes: list[Change]) -> str:
    head = f"{'case':<52} {'p50 ms':>15} {'Δp50':>7} {'Δp99':>7} {'Δreq/s':>7} {'p-value':>8}  verdict"
    lines = [head, "-" * len(head)]
    for c in changes:
        verdict = "REGRESSION" if c.regression else "improved" if c.improvement else "no significant change" if c.p_value >= DEFAULT_ALPHA else "within threshold"
        lines.append(
            f"{c.name[:52]:<52} {c.old.p50_ms:>6.2f} → {c.new.p50_ms:<6.2f} {c.relative('p50_ms'):>+7.1%} {c.relative('p99_ms'):>+7.1%} "
            f"{c.relative('throughput_rps'):>+7.1%} {c.p_value:>8.2g}  {verdict}"
        )
    return "\n".join(lines)


def latest_two(storage: Path) -> tuple[Path, Path]:
    """The two newest saved runs under a pytest-benchmark storage folder (NNNN_*.json)."""
    files = sorted(Path(storage).rglob("*.json"), key=lambda p: (p.name, p.stat().st_mtime))
    if len(files) < 2:
        raise AxonError(f"{storage}: need at least two saved runs to compare, found {len(files)}")
    return files[-2], files[-1]
