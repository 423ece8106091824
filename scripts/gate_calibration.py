"""Measure the regression gate on recorded noise: false-alarm rate and detection delay.

    python scripts/gate_calibration.py tests/data/history_noise

Two-sample gate: every 3-vs-3 split of the recorded runs (unchanged code, so any regression is a
false alarm), then the same splits with the new side made 15% worse. History gate: every prefix of
the history as the newest run (false alarms), then a 15% step injected from run k on (detection
delay, in runs after the first slow one). Each at the recorded noise, and with the recorded
deviations from the median compressed to at most +-10% (the noise the gate is specified for).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axon.verdicts import gate, history, runs

METRICS = ("p50_ms", "p99_ms", "throughput_rps")
STEP = 0.15
SPLIT = 3
NOISE_BOUND = 0.10


def scaled(series: list[runs.Run], factor_from: int, factor: float) -> list[runs.Run]:
    """The runs with every metric made ``factor`` worse from index ``factor_from`` on."""
    out = []
    for i, r in enumerate(series):
        if i < factor_from:
            out.append(r)
        else:
            out.append(
                replace(
                    r,
                    p50_ms=r.p50_ms * factor,
                    p99_ms=r.p99_ms * factor,
                    mean_ms=r.mean_ms * factor,
                    throughput_rps=r.throughput_rps / factor,
                )
            )
    return out


def compressed(series: list[runs.Run], bound: float = NOISE_BOUND) -> list[runs.Run]:
    """The runs with each metric's log deviation from its median shrunk so the largest is ``bound``."""
    out = list(series)
    for metric in ("p50_ms", "p99_ms", "mean_ms", "throughput_rps"):
        logs = np.log([r.value(metric) for r in series])
        centre = np.median(logs)
        shrink = np.log1p(bound) / np.abs(logs - centre).max()
        out = [replace(r, **{metric: float(np.exp(centre + (v - centre) * shrink))}) for r, v in zip(out, logs)]
    return out


def spread(series: list[runs.Run]) -> dict[str, tuple[float, float, float]]:
    """Per metric: lowest and highest run relative to the median, and the robust sd (MAD) of logs."""
    out = {}
    for metric in METRICS:
        v = np.array([r.value(metric) for r in series])
        med = np.median(v)
        mad = 1.4826 * np.median(np.abs(np.log(v) - np.log(med)))
        out[metric] = (v.min() / med - 1, v.max() / med - 1, mad)
    return out


def split_rates(series: list[runs.Run], metric: str, alpha: float = gate.DEFAULT_ALPHA) -> tuple[int, int, int]:
    """(false alarms, detections of a 15% step, splits) over all disjoint 3-vs-3 splits."""
    false_alarms = detections = total = 0
    idx = range(len(series))
    slower = scaled(series, 0, 1 + STEP)
    for old in itertools.combinations(idx, SPLIT):
        rest = [i for i in idx if i not in old]
        for new in itertools.combinations(rest, SPLIT):
            a = [series[i] for i in old]
            total += 1
            false_alarms += gate.judge("c", a, [series[i] for i in new], metric, alpha=alpha).regression
            detections += gate.judge("c", a, [slower[i] for i in new], metric, alpha=alpha).regression
    return false_alarms, detections, total


def prefix_alarms(series: list[runs.Run], metric: str) -> list[int]:
    """History lengths at which the gate fails the newest run."""
    return [
        n
        for n in range(history.MIN_HISTORY, len(series) + 1)
        if history.judge_history("c", series[:n], metric, power=False).regression
    ]


def first_detection(series: list[runs.Run], metric: str, k: int) -> int | None:
    """Runs after the first slow one (index ``k``) until the gate fails; None if it never does."""
    stepped = scaled(series, k, 1 + STEP)
    for n in range(k + 1, len(series) + 1):
        if history.judge_history("c", stepped[:n], metric, power=False).regression:
            return n - 1 - k
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage", type=Path)
    args = parser.parse_args()
    ((case, series),) = runs.load_many([args.storage]).items()
    for name, data in (("recorded noise", series), (f"noise compressed to +-{NOISE_BOUND:.0%}", compressed(series))):
        print(f"== {case}, {len(data)} runs, {name}")
        for metric, (lo, hi, mad) in spread(data).items():
            print(f"  spread {metric}: {lo:+.1%} .. {hi:+.1%} around the median, robust sd of logs {mad:.3f}")
        for metric in METRICS:
            fa, det, total = split_rates(data, metric)
            print(
                f"  compare 3 vs 3, {metric}: false alarms {fa}/{total} ({fa / total:.2%}), 15% step detected {det}/{total} ({det / total:.1%})"
            )
        for metric in METRICS:
            delays = {k: first_detection(data, metric, k) for k in range(2, len(data))}
            print(
                f"  history, {metric}: false alarms at prefix lengths {prefix_alarms(data, metric)}; detection delay by step start {delays}"
            )


if __name__ == "__main__":
    main()
