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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from axon.verdicts import edivisive
from axon.verdicts.gate import DEFAULT_THRESHOLD
from axon.verdicts.runs import METRICS, Run

# Measured on every prefix of 12 recorded runs of unchanged code, three metrics: no false alarm
# at 0.05 (docs/gate.md). Lower values need longer histories to confirm a step at all.
DEFAULT_ALPHA = 0.05
MIN_HISTORY = 2 * edivisive.MIN_SEGMENT


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
            "change_points": [{"index": c.index, "p_value": c.p_value, "source": self.sources[c.index]} for c in self.change_points],
            "previous_level": self.previous_level,
            "level": self.level,
            "newest": self.newest,
            "judged": self.judged,
            "change": self.change,
            "verdict": self.verdict,
            "regression": self.regression,
        }


def judge_history(case: str, runs: list[Run], metric: str = "p50_ms", threshold: float = DEFAULT_THRESHOLD,
                  alpha: float = DEFAULT_ALPHA) -> HistoryVerdict:
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
    """
    per_source: dict[str, list[float]] = {}
    for r in runs:  # already in time order, then repeat order
        per_source.setdefault(r.source, []).append(r.value(metric))
    values = np.array([float(np.median(v)) for v in per_source.values()])
    sources = tuple(per_source)
    if len(values) < MIN_HISTORY:
        return HistoryVerdict(case, metric, tuple(values), sources, (), None, float(np.median(values)), None,
                              f"history too short ({len(values)} runs, need {MIN_HISTORY}): not judged", False)
    # Logs: run-to-run noise is multiplicative, so a 15% step looks the same at any level.
    points = tuple(edivisive.change_points(np.log(values), alpha))
    starts = [0, *(c.index for c in points)]
    level = float(np.median(values[starts[-1]:]))
    if not points:
        return HistoryVerdict(case, metric, tuple(values), sources, (), None, level, None, "no change point", False)
    previous = float(np.median(values[starts[-2]:starts[-1]]))
    change = level / previous - 1
    worse_up = METRICS[metric][1]
    worse = change > threshold if worse_up else change < -threshold
    better = change < -threshold if worse_up else change > threshold
    since = f"since run {starts[-1] + 1} of {len(values)} (p={points[-1].p_value:.3g})"
    verdict = f"REGRESSION {since}" if worse else f"improved {since}" if better else f"change point within threshold {since}"
    return HistoryVerdict(case, metric, tuple(values), sources, points, previous, level, change, verdict, worse)


def table(verdicts: list[HistoryVerdict]) -> str:
    """Runs, change points, the previous and the newest segment's medians, the newest run, change and verdict.

    ``segment`` is the median of the segment the newest run lies in (what the gate judges);
    ``newest`` is the newest run itself, so a reader sees both the level and the latest point.
    """
    if not verdicts:
        return ""
    head = f"{'case':<48} {'runs':>4} {'cps':>3} {'previous':>9} {'segment':>9} {'newest':>9} {'change':>7}  verdict"
    lines = [head, "-" * len(head)]
    for v in verdicts:
        prev = "-" if v.previous_level is None else f"{v.previous_level:.4g}"
        change = "-" if v.change is None else f"{v.change:+.1%}"
        lines.append(f"{v.case[:48]:<48} {len(v.values):>4} {len(v.change_points):>3} {prev:>9} {v.level:>9.4g} {v.newest:>9.4g} {change:>7}  {v.verdict}")
    lines.append("(previous, segment: medians of the last two segments; newest: the newest run, the median of its repeats)")
    return "\n".join(lines)
