"""Two-sample verdict (``axon compare OLD NEW``): runs, not requests, are the evidence.

Method: Welch's t-test on the logarithms of the run-level values (one value per run or repeat:
its p50, p99 or throughput). Logs, because run-to-run noise is multiplicative and the verdict is
a ratio; Welch, because the two sides need not share a variance. The change reported is the ratio
of geometric means. A case is a REGRESSION only when the change is significant at run level
(p < alpha) AND worse than the threshold; both sides need at least two runs for that.

With one run on a side but several on the other, the single run is judged against the spread of
the other side (a prediction t-test, df = n - 1). With one run per side nothing can be judged:
the verdict is threshold-only and never called significant.

Why not the histograms: a run's thousands of requests share its machine state, so they are not
independent evidence (a Mann-Whitney U over them gave p = 5e-286 for -6% between two runs of
unchanged code). Why not a rank test: with 3 runs a side, its smallest two-sided p is 0.1. Why
not a bootstrap of run medians: 3 runs give 10 distinct resamples, too coarse for an interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from axon.verdicts.runs import METRICS, Run

DEFAULT_THRESHOLD = 0.10
# Measured on 18,480 random 3-vs-3 splits of 12 recorded runs of unchanged code: 0.2-0.3% false
# alarms per metric at 0.01 (1.3-1.7% at 0.05), the threshold applied too (docs/gate.md).
DEFAULT_ALPHA = 0.01
SINGLE_RUN_NOTE = "1 run per side: significance cannot be judged; threshold only"

WELCH = "Welch t on log run values"
PREDICTION = "prediction t on log run values (1 run vs the other side's spread)"
THRESHOLD_ONLY = "threshold only"


@dataclass(frozen=True)
class Verdict:
    """The comparison of one case on one metric."""

    case: str
    metric: str
    old: tuple[float, ...]
    new: tuple[float, ...]
    change: float  # new / old - 1, on geometric means
    p_value: float | None  # None: significance cannot be judged (1 run per side)
    method: str
    verdict: str
    regression: bool  # fails the gate

    def as_dict(self) -> dict:
        return {
            "case": self.case,
            "metric": self.metric,
            "old": list(self.old),
            "new": list(self.new),
            "change": self.change,
            "p_value": self.p_value,
            "method": self.method,
            "verdict": self.verdict,
            "regression": self.regression,
        }


def run_level_p(old: np.ndarray, new: np.ndarray) -> tuple[float | None, str]:
    """Two-sided p-value of a difference in mean log value, and the method used."""
    a, b = np.log(old), np.log(new)
    if len(a) >= 2 and len(b) >= 2:
        p = sps.ttest_ind(b, a, equal_var=False).pvalue
        method = WELCH
    elif len(a) + len(b) >= 3:
        many, one = (a, b) if len(a) > 1 else (b, a)
        scale = many.std(ddof=1) * math.sqrt(1 + 1 / len(many))
        t = (one[0] - many.mean()) / scale if scale > 0 else math.inf * np.sign(one[0] - many.mean())
        p = 2 * sps.t.sf(abs(t), df=len(many) - 1)
        method = PREDICTION
    else:
        return None, THRESHOLD_ONLY
    if not math.isfinite(p):  # identical values on both sides: no variance to judge with
        p = 1.0 if a.mean() == b.mean() else 0.0
    return float(p), method


def judge(case: str, old: list[Run], new: list[Run], metric: str = "p50_ms", threshold: float = DEFAULT_THRESHOLD,
          alpha: float = DEFAULT_ALPHA, single_run_fails: bool = False) -> Verdict:
    """Compare the runs of one case.

    Parameters
    ----------
    old, new
        The runs of each side (at least one each).
    metric
        ``p50_ms``, ``p99_ms``, ``mean_ms`` (larger is worse) or ``throughput_rps`` (smaller is worse).
    threshold
        Relative change that matters (0.10: 10%).
    alpha
        Run-level significance level.
    single_run_fails
        With 1 run per side, fail on the threshold alone (off by default: one run is one sample).
    """
    a = np.array([r.value(metric) for r in old])
    b = np.array([r.value(metric) for r in new])
    change = float(math.exp(np.log(b).mean() - np.log(a).mean()) - 1)
    worse_up = METRICS[metric][1]
    worse = change > threshold if worse_up else change < -threshold
    better = change < -threshold if worse_up else change > threshold
    p, method = run_level_p(a, b)
    if p is None:
        verdict = "over threshold (unconfirmed)" if worse else "improved (unconfirmed)" if better else "within threshold"
        regression = worse and single_run_fails
    elif p < alpha:
        verdict = "REGRESSION" if worse else "improved" if better else "significant, within threshold"
        regression = worse
    else:
        verdict = "over threshold, not significant" if worse or better else "no significant change"
        regression = False
    return Verdict(case, metric, tuple(a), tuple(b), change, p, method, verdict, regression)


def compare(old: dict[str, list[Run]], new: dict[str, list[Run]], metric: str = "p50_ms", threshold: float = DEFAULT_THRESHOLD,
            alpha: float = DEFAULT_ALPHA, single_run_fails: bool = False) -> list[Verdict]:
    """A verdict for every case present on both sides, sorted by case."""
    return [judge(case, old[case], new[case], metric, threshold, alpha, single_run_fails) for case in sorted(set(old) & set(new))]


def _spread(values: tuple[float, ...]) -> str:
    median = float(np.median(values))
    if len(values) == 1:
        return f"{median:.4g}"
    return f"{median:.4g} [{min(values):.4g}-{max(values):.4g}]"


def table(verdicts: list[Verdict]) -> str:
    """Median [range] per side, runs per side, change, p-value and verdict, one line per case."""
    if not verdicts:
        return ""
    metric = verdicts[0].metric
    head = f"{'case':<48} {'runs':>5} {metric + ' old':>22} {metric + ' new':>22} {'change':>7} {'p':>8}  verdict"
    lines = [head, "-" * len(head)]
    for v in verdicts:
        p = "n/a" if v.p_value is None else f"{v.p_value:.2g}"
        lines.append(
            f"{v.case[:48]:<48} {len(v.old):>2}/{len(v.new):<2} {_spread(v.old):>22} {_spread(v.new):>22} {v.change:>+7.1%} {p:>8}  {v.verdict}"
        )
    return "\n".join(lines)
