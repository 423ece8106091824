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

Every verdict also says the smallest change its evidence could have told from noise
(:func:`detectable_change`): a "no significant change" on 3 noisy runs a side is not a pass for
a 15% regression, and the output says so.
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
    # The smallest change (worse direction, relative) that could have reached p < alpha with this
    # evidence; None: nothing can be judged (1 run a side). See detectable_change.
    detectable: float | None = None
    spread: float | None = None  # the run-to-run spread the test used: sd of log run values

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
            "detectable_change": self.detectable,
            "run_spread": self.spread,
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


def detectable_change(old: np.ndarray, new: np.ndarray, alpha: float, worse_up: bool = True) -> tuple[float | None, float | None]:
    """The smallest change the run-level test could tell from noise, and the spread it used.

    The test (:func:`run_level_p`) compares mean log values. A difference ``d`` in mean log value
    is significant at two-sided level ``alpha`` when ``|d| >= t(1 - alpha/2, df) * SE``, so

        d* = t(1 - alpha/2, df) * SE

    is the smallest difference that could have been significant, given the observed spread:

    - Welch (both sides >= 2 runs): ``SE = sqrt(s_old^2 / n_old + s_new^2 / n_new)``, ``df`` by
      Welch-Satterthwaite, ``s`` the sample sd (ddof 1) of each side's log run values;
    - prediction (1 run against n): ``SE = s * sqrt(1 + 1/n)``, ``df = n - 1``;
    - 1 run a side: no spread to judge with, so None.

    The change is returned as a ratio in the worse direction: ``exp(d*) - 1`` where larger is
    worse (latency), ``1 - exp(-d*)`` where smaller is worse (throughput). A true change of
    exactly that size is found about half the time; any smaller observed change is never
    significant. The spread returned is the pooled sd of the log run values (the many side's for
    a prediction test), as a ratio ``exp(s) - 1``.
    """
    a, b = np.log(np.asarray(old, dtype=float)), np.log(np.asarray(new, dtype=float))
    if len(a) >= 2 and len(b) >= 2:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
        pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    elif len(a) + len(b) >= 3:
        many = a if len(a) > 1 else b
        pooled = float(many.std(ddof=1))
        se, df = pooled * math.sqrt(1 + 1 / len(many)), len(many) - 1
    else:
        return None, None
    d = float(sps.t.ppf(1 - alpha / 2, df)) * se
    return (math.expm1(d) if worse_up else -math.expm1(-d)), math.expm1(pooled)


def judge(
    case: str,
    old: list[Run],
    new: list[Run],
    metric: str = "p50_ms",
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    single_run_fails: bool = False,
) -> Verdict:
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
    detectable, spread = detectable_change(a, b, alpha, worse_up)
    return Verdict(case, metric, tuple(a), tuple(b), change, p, method, verdict, regression, detectable, spread)


def compare(
    old: dict[str, list[Run]],
    new: dict[str, list[Run]],
    metric: str = "p50_ms",
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    single_run_fails: bool = False,
) -> list[Verdict]:
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
    head = f"{'case':<48} {'runs':>5} {metric + ' old':>22} {metric + ' new':>22} {'change':>7} {'p':>8} {'detect':>7}  verdict"
    lines = [head, "-" * len(head)]
    for v in verdicts:
        p = "n/a" if v.p_value is None else f"{v.p_value:.2g}"
        detect = "n/a" if v.detectable is None else f"{v.detectable:.0%}"
        lines.append(
            f"{v.case[:48]:<48} {len(v.old):>2}/{len(v.new):<2} {_spread(v.old):>22} {_spread(v.new):>22} {v.change:>+7.1%} {p:>8} {detect:>7}  {v.verdict}"
        )
    lines.append("(detect: the smallest change these runs could tell from noise at this alpha; see the line below)")
    return "\n".join(lines)


def _runs_a_side(verdicts: list[Verdict]) -> str:
    sides = sorted({(len(v.old), len(v.new)) for v in verdicts})
    if len(sides) == 1 and sides[0][0] == sides[0][1]:
        return f"{sides[0][0]} run{'s' if sides[0][0] > 1 else ''} a side"
    return ", ".join(f"{o} vs {n} runs" for o, n in sides)


def power_line(verdicts: list[Verdict], alpha: float) -> str:
    """One sentence: the smallest change the evidence could tell from noise (the largest over the cases).

    Said for every comparison, so that "no significant change" on a few noisy runs never reads
    as "no change of any size". Per case, the table's ``detect`` column.
    """
    judged = [v for v in verdicts if v.detectable is not None]
    if not judged:
        return f"no change of any size could be told from noise with {_runs_a_side(verdicts)}: a run is one sample (repeat each side: axon bench --repeat 3, pytest --axon-repeat 3)"
    worst = max(judged, key=lambda v: v.detectable)
    spread = f", run-to-run spread ±{worst.spread:.0%}" if worst.spread is not None else ""
    which = f" (in {worst.case}; per case in the detect column)" if len(verdicts) > 1 else ""
    unjudged = len(verdicts) - len(judged)
    rest = f"; {unjudged} case(s) with 1 run a side: nothing could be told" if unjudged else ""
    return f"a change under {worst.detectable:.0%} could not be told from noise with {_runs_a_side(judged)} (alpha {alpha:g}{spread}){which}{rest}"
