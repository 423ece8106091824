"""How often ``axon tune``'s verdict crowns a candidate that is no better, and how often it finds a real gain.

A benchmark, not a test: no server. It feeds the verdict logic itself (the screen of
:func:`axon.study.tune.verdict.evaluate` with Holm's correction, the nominee, and the head-to-head
of :func:`axon.study.tune.confirm.decide`) throughput values drawn from recorded run-to-run noise:

- ``history``: ``tests/data/history_noise``, 12 runs of unchanged code recorded back to back
  (test_closed_loop[v1-batching-on-c16], 3 s windows, python engine, 2026-11-29, shared 2-core
  machine; 4,154-7,339 req/s). Each simulated run is one of the 12, drawn with replacement.
- ``tune``: ``docs/tune-2026-12-01``'s 36 groups (12 candidates x 3 concurrencies) of 3 runs
  each, from a real ``axon tune``. Each simulated candidate takes the run-to-run noise of one
  group: that group's deviations from its mean log throughput, scaled by sqrt(3/2) (deviations
  from a mean of 3 are narrower than the noise), drawn with replacement. Groups differ in spread,
  so this also tries the pooled sd against unequal noise.

Each draw: a default and 12 candidates, ``--repeat`` screen runs each; the nominee, if any, gets
``--pairs`` fresh head-to-head pairs from the same noise. Two scenarios:

- **null**: every candidate identical to the default. A crowned winner is a false winner
  (must be at most alpha = 5%);
- **+30%**: one candidate (c5) really serves 30% more. It is found when c5 is crowned.

    python benchmarks/tune_verdict.py [--draws 1000] [--pairs 6] [--repeat 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from axon.study.tune import confirm, verdict

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "tests" / "data" / "history_noise"
TUNE_RECORD = ROOT / "docs" / "tune-2026-12-01" / "particle_classifier_v1" / "tune.json"
CANDIDATES = 12
REAL_GAIN = 1.30
BUDGET = verdict.Budget(p50_ms=7.0, p99_ms=25.0)
Noise = Callable[[np.random.Generator, int], Callable[[int], np.ndarray]]  # (rng, candidate) -> (n -> multipliers)


def history_noise() -> Noise:
    values = []
    for path in sorted(HISTORY.rglob("*.json")):
        for bench in json.loads(path.read_text())["benchmarks"]:
            values.append(bench["extra_info"]["axon"]["throughput_rps"])
    logs = np.log(values)
    multipliers = np.exp(logs - logs.mean())
    return lambda rng, _cand: lambda n: rng.choice(multipliers, n)


def tune_noise() -> Noise:
    doc = json.loads(TUNE_RECORD.read_text())
    groups: dict[tuple, list[float]] = {}
    for r in doc["runs"]:
        groups.setdefault((r["tune"]["candidate"], r["load"]["concurrency"]), []).append(r["throughput_rps"])
    deviations = []
    for values in groups.values():
        logs = np.log(values)
        deviations.append(np.exp((logs - logs.mean()) * math.sqrt(len(logs) / (len(logs) - 1))))

    def pick(rng: np.random.Generator, _cand: int) -> Callable[[int], np.ndarray]:
        group = deviations[rng.integers(len(deviations))]
        return lambda n: rng.choice(group, n)

    return pick


def _record(cid: str, rnd: int, rps: float) -> dict:
    return {
        "tune": {"candidate": cid, "round": rnd, "stage": 0},
        "load": {"concurrency": 64},
        "throughput_rps": float(rps),
        "latency_ms": {"p50": 2.0, "p99": 10.0},
    }


def one_draw(
    rng: np.random.Generator, noise: Noise, gains: dict[int, float], repeat: int, pairs: int, alpha: float
) -> str | None:
    """The crowned candidate's id, or None."""
    draws = {i: noise(rng, i) for i in range(CANDIDATES + 1)}  # 0: the default
    candidates = [{"id": f"c{i}", "label": f"c{i}", "error": None} for i in range(CANDIDATES + 1)]
    runs = [
        _record(f"c{i}", k, 10_000 * gains.get(i, 1.0) * m) for i in range(CANDIDATES + 1) for k, m in enumerate(draws[i](repeat))
    ]
    evaluations = verdict.evaluate(candidates, runs, BUDGET, alpha=alpha)
    nominee = verdict.nominee(evaluations)
    if nominee is None:
        return None
    i = int(nominee.cid[1:])
    default_runs = [_record("c0", k, 10_000 * m) for k, m in enumerate(draws[0](pairs))]
    mine = [_record(nominee.cid, k, 10_000 * gains.get(i, 1.0) * m) for k, m in enumerate(draws[i](pairs))]
    held = confirm.decide(nominee.cid, default_runs, mine, nominee.comparison.holm_p, repeat, pairs, BUDGET, alpha)
    return nominee.cid if held["held"] else None


def rates(noise: Noise, draws: int, repeat: int, pairs: int, alpha: float, seed: int) -> tuple[float, float, float]:
    """(false-winner rate, +30% found rate, +30% nominated-but-not-confirmed rate)."""
    rng = np.random.default_rng(seed)
    false = sum(one_draw(rng, noise, {}, repeat, pairs, alpha) is not None for _ in range(draws))
    found = wrong = 0
    for _ in range(draws):
        crowned = one_draw(rng, noise, {5: REAL_GAIN}, repeat, pairs, alpha)
        found += crowned == "c5"
        wrong += crowned is not None and crowned != "c5"
    return false / draws, found / draws, wrong / draws


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument(
        "--pairs", type=int, default=confirm.DEFAULT_PAIRS, help=f"head-to-head pairs (default {confirm.DEFAULT_PAIRS}, tune's)"
    )
    p.add_argument("--repeat", type=int, default=3, help="screen runs per candidate (default 3, tune's)")
    p.add_argument("--alpha", type=float, default=verdict.DEFAULT_ALPHA)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    print(
        f"{CANDIDATES} candidates + the default, {args.repeat} screen runs each, {args.pairs} head-to-head pairs, alpha {args.alpha:g}, {args.draws:,} draws per scenario"
    )
    print(f"{'noise':<8} {'false winners (null)':>21} {'+30% found':>11} {'+30%: another crowned':>22}")
    worst = 0.0
    for name, noise in (("history", history_noise()), ("tune", tune_noise())):
        false, found, wrong = rates(noise, args.draws, args.repeat, args.pairs, args.alpha, args.seed)
        worst = max(worst, false)
        print(f"{name:<8} {false:>21.1%} {found:>11.1%} {wrong:>22.1%}")
    return 0 if worst <= args.alpha else 1


if __name__ == "__main__":
    sys.exit(main())
