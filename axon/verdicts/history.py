"""History gate (``axon compare --storage DIR``): change points over every saved run of a case.

Each case's saved runs (files, in time order) form a series per metric: one point per saved
run, the median of its repeats. The repeats of one CI run share that minute's machine (measured
2026-11-29: two back-to-back CI runs of unchanged code, 3 repeats each, differed by 33% in p50
while each run's repeats agreed within a few %), so treating them as separate points would let
one slow minute open a "significant" segment of its own.
E-divisive means with a permutation test (:mod:`axon.verdicts.edivisive`) splits the series into
segments of significantly different level. The newest run fails the gate when it lies in a last
segment whose median is worse than the previous segment's median by more than the threshold
(latency higher, throughput lower). Two conditions, so that neither noise (no significant change
point) nor a significant but small shift (under the threshold) fails a build.

Segment levels are medians, not means: one run slowed 65% by a busy machine (it happens in the
recorded history in tests/data/history_noise) moves a 5-run mean by 13%, more than the threshold.
A new segment needs two points (:data:`~axon.verdicts.edivisive.MIN_SEGMENT`), so a single slow run
never fails the gate on its own: a regression must persist over two saved runs.

Each verdict also says the smallest step in the newest two runs that this history could have told
from noise (:func:`detectable_step`): on a history with +-25% run-to-run spread a 15% step is
rightly not flagged, and the output says that nothing under some size could have been.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from axon.verdicts import edivisive
from axon.verdicts.gate import DEFAULT_THRESHOLD
from axon.verdicts.runs import METRICS, Run

# Measured on every prefix of 12 recorded runs of unchanged code, three metrics: no false alarm
# at 0.05 (docs/gate.md). Lower values need longer histories to confirm a step at all.
DEFAULT_ALPHA = 0.05
MIN_HISTORY = 2 * edivisive.MIN_SEGMENT
# The power search: a step of up to 16x (log 16), halved this often (to ~0.3% in log units).
MAX_STEP_LOG = math.log(16.0)
STEP_BISECTIONS = 10


@dataclass(frozen=True)
class HistoryVerdict:
    """The verdict on the newest run of one case's history, for one metric."""

    case: str
    metric: str
    values: tuple[float, ...]
    sources: tuple[str, ...]
    change_points: tuple[edivisive.ChangePoint, ...]
    previous_level: float | None  # median of the segment before the last; None without a change point
    level: float  # median of the last segment (the one the newest run lies in)
    change: float | None  # level / previous_level - 1
    verdict: str
    regression: bool
    # Smallest step (worse direction, relative) in the newest MIN_SEGMENT runs the test could find;
    # math.inf: none up to 16x at this history's length; None: not judged. See detectable_step.
    detectable: float | None = None
    spread: float | None = None  # sd of the log values around their segments' medians, as a ratio

    @property
    def judged(self) -> bool:
        """False when the history was too short to look for change points: no verdict either way."""
        return len(self.values) >= MIN_HISTORY

    @property
    def newest(self) -> float:
        """The newest run's own value (the median of its repeats), not its segment's median."""
        return self.values[-1]

    @property
    def segment_starts(self) -> list[int]:
        return [0, *(c.index for c in self.change_points)]

    def as_dict(self) -> dict:
        return {
            "case": self.case,
            "metric": self.metric,
            "values": list(self.values),
            "sources": list(self.sources),
            "change_points": [
                {"index": c.index, "p_value": c.p_value, "source": self.sources[c.index]} for c in self.change_points
            ],
            "previous_level": self.previous_level,
            "level": self.level,
            "newest": self.newest,
            "judged": self.judged,
            "change": self.change,
            "verdict": self.verdict,
            "regression": self.regression,
            "detectable_step": None if self.detectable is None or math.isinf(self.detectable) else self.detectable,
            "detectable_step_runs": edivisive.MIN_SEGMENT,
            "run_spread": self.spread,
        }


def detectable_step(logs: np.ndarray, starts: list[int], alpha: float, worse_up: bool = True) -> tuple[float, float]:
    """The smallest step in the newest runs the E-divisive test could find here, and the spread.

    The permutation test has no closed form, so the test itself is asked. The history's noise is
    its log values minus the median of the segment each lies in (known changes are not noise; the
    newest ``MIN_SEGMENT`` runs count as a segment of their own, so a step they already carry is
    not counted twice).
    A step ``d`` (in log units, in the worse direction) is added to the newest
    ``MIN_SEGMENT`` points, the earliest a regression can fail the gate, and
    :func:`axon.verdicts.edivisive.change_points` is run at ``alpha`` on the same number of points.
    The detectable step is the smallest ``d`` whose change point is found where the step starts,
    by bisection on ``[0, log 16]``. It depends on the level (``alpha``), the runs before the step
    (``n - MIN_SEGMENT``) and after it (``MIN_SEGMENT``), and the observed spread; and it has a
    floor no spread removes: the permutation p-value of a step in the last 2 of ``n`` points
    cannot go below about ``4 / (n (n - 1))``, so at alpha 0.05 a history under ~10 runs can't
    see such a step at any size (``math.inf``).

    Returns the step as a ratio (``exp(d) - 1`` for latency, ``1 - exp(-d)`` for throughput)
    and the spread (sd of the noise, ``exp(sd) - 1``).
    """
    noise = np.asarray(logs, dtype=float).copy()
    at = len(noise) - edivisive.MIN_SEGMENT
    # The newest runs are centred on their own median too: a step they already carry (one too
    # small to be found) is not noise, and must not make a further step look easier to find.
    bounds = sorted({*starts, at, len(noise)})
    for a, b in zip(bounds[:-1], bounds[1:]):
        noise[a:b] -= np.median(noise[a:b])
    spread = math.expm1(float(noise.std(ddof=1)))
    sign = 1.0 if worse_up else -1.0

    def found(step: float) -> bool:
        stepped = noise.copy()
        stepped[at:] += sign * step
        return any(c.index == at for c in edivisive.change_points(stepped, alpha))

    if not found(MAX_STEP_LOG):
        return math.inf, spread
    lo, hi = 0.0, MAX_STEP_LOG
    for _ in range(STEP_BISECTIONS):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if found(mid) else (mid, hi)
    return (math.expm1(hi) if worse_up else -math.expm1(-hi)), spread


def judge_history(
    case: str,
    runs: list[Run],
    metric: str = "p50_ms",
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    power: bool = True,
) -> HistoryVerdict:
    """Change points in a case's history and the verdict on its newest run.

    Parameters
    ----------
    runs
        Every run of the case, oldest first (as :func:`axon.verdicts.runs.load_many` orders them).
    metric
        ``p50_ms``, ``p99_ms``, ``mean_ms`` (larger is worse) or ``throughput_rps`` (smaller is worse).
    threshold
        Relative change between segment medians that matters (0.10: 10%).
    alpha
        Significance level of each change point's permutation test.
    power
        Also find the smallest detectable step (:func:`detectable_step`; about ten runs of the
        test, so calibration loops over thousands of histories leave it out).
    """
    per_source: dict[str, list[float]] = {}
    for r in runs:  # already in time order, then repeat order
        per_source.setdefault(r.source, []).append(r.value(metric))
    values = np.array([float(np.median(v)) for v in per_source.values()])
    sources = tuple(per_source)
    if len(values) < MIN_HISTORY:
        return HistoryVerdict(
            case,
            metric,
            tuple(values),
            sources,
            (),
            None,
            float(np.median(values)),
            None,
            f"history too short ({len(values)} runs, need {MIN_HISTORY}): not judged",
            False,
        )
    # Logs: run-to-run noise is multiplicative, so a 15% step looks the same at any level.
    points = tuple(edivisive.change_points(np.log(values), alpha))
    starts = [0, *(c.index for c in points)]
    level = float(np.median(values[starts[-1] :]))
    worse_up = METRICS[metric][1]
    detectable, spread = detectable_step(np.log(values), starts, alpha, worse_up) if power else (None, None)
    if not points:
        return HistoryVerdict(
            case, metric, tuple(values), sources, (), None, level, None, "no change point", False, detectable, spread
        )
    previous = float(np.median(values[starts[-2] : starts[-1]]))
    change = level / previous - 1
    worse = change > threshold if worse_up else change < -threshold
    better = change < -threshold if worse_up else change > threshold
    since = f"since run {starts[-1] + 1} of {len(values)} (p={points[-1].p_value:.3g})"
    verdict = f"REGRESSION {since}" if worse else f"improved {since}" if better else f"change point within threshold {since}"
    return HistoryVerdict(
        case, metric, tuple(values), sources, points, previous, level, change, verdict, worse, detectable, spread
    )


def table(verdicts: list[HistoryVerdict]) -> str:
    """Runs, change points, the previous and the newest segment's medians, the newest run, change and verdict.

    ``segment`` is the median of the segment the newest run lies in (what the gate judges);
    ``newest`` is the newest run itself, so a reader sees both the level and the latest point.
    """
    if not verdicts:
        return ""
    head = (
        f"{'case':<48} {'runs':>4} {'cps':>3} {'previous':>9} {'segment':>9} {'newest':>9} {'change':>7} {'detect':>7}  verdict"
    )
    lines = [head, "-" * len(head)]
    for v in verdicts:
        prev = "-" if v.previous_level is None else f"{v.previous_level:.4g}"
        change = "-" if v.change is None else f"{v.change:+.1%}"
        detect = "n/a" if v.detectable is None else "none" if math.isinf(v.detectable) else f"{v.detectable:.0%}"
        lines.append(
            f"{v.case[:48]:<48} {len(v.values):>4} {len(v.change_points):>3} {prev:>9} {v.level:>9.4g} {v.newest:>9.4g} {change:>7} {detect:>7}  {v.verdict}"
        )
    lines.append(
        "(previous, segment: medians of the last two segments; newest: the newest run, the median of its repeats; "
        f"detect: the smallest step in the newest {edivisive.MIN_SEGMENT} runs this history could tell from noise)"
    )
    return "\n".join(lines)


def power_line(verdicts: list[HistoryVerdict], alpha: float) -> str | None:
    """One sentence: the smallest step in the newest runs these histories could tell from noise (the largest over cases).

    None when no case was judged (the caller says so already).
    """
    judged = [v for v in verdicts if v.judged and v.detectable is not None]
    if not judged:
        return None
    k = edivisive.MIN_SEGMENT
    worst = max(judged, key=lambda v: v.detectable)
    runs = f"{len(worst.values)} runs of history"
    which = f" (in {worst.case}; per case in the detect column)" if len(verdicts) > 1 else ""
    if math.isinf(worst.detectable):
        return (
            f"no step in the newest {k} runs, of any size up to 16x, could be told from noise with {runs} at alpha {alpha:g}: "
            f"the permutation test needs a longer history (about 10 runs at 0.05){which}"
        )
    return f"a step under {worst.detectable:.0%} in the newest {k} runs could not be told from noise with {runs} (alpha {alpha:g}, run-to-run spread ±{worst.spread:.0%}){which}"
