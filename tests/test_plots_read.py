"""Plots that read in ten seconds (issue 21, section 6): no overlapping labels, no squashed scale, no run 1.5."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from axon.records.repeats import Spread
from axon.study.tune import report as tune_report
from axon.study.tune import verdict
from axon.verdicts import edivisive, history, plot

ROOT = Path(__file__).resolve().parent.parent


def _recorded_tune() -> list[verdict.Evaluation]:
    """The 12 candidates of docs/tune-2026-11-29 (its table's medians); one with a 225 ms worst p99, as recorded."""
    rows = [line for line in (ROOT / "docs" / "tune-2026-11-29" / "report.md").read_text().splitlines() if re.match(r"\| \d+ \| c\d+", line)]
    out = []
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        cid = cells[1].split()[0]
        t = [float(x.replace(",", "")) for x in re.match(r"([\d,]+) \[([\d,]+)–([\d,]+)\]", cells[3]).groups()]
        p99 = float(cells[5])
        point = verdict.Point(int(cells[2]), Spread(t[0], t[1], t[2], 3), Spread(float(cells[4]), float(cells[4]), float(cells[4]), 3),
                              Spread(p99, p99 * 0.8, 225.0 if cid == "c10" else p99 * 1.5, 3), (t[0],), "breaks" not in cells[9], True)  # fmt: skip
        out.append(verdict.Evaluation(cid, cid, "default" if cid == "c0" else "measured", point, verdict.Comparison(None, False, "")))
    return out


def test_tune_plot_labels_never_overlap_and_a_long_error_bar_does_not_squash_the_rest():
    evaluations = _recorded_tune()
    fig = tune_report.plot(evaluations, verdict.Budget(7.0, 25.0), None, "particle_classifier_v1")
    (ax,) = fig.axes
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    assert len(boxes) >= 6  # clusters, not one label for all
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    named = ", ".join(t.get_text() for t in ax.texts)
    assert all(re.search(rf"\b{e.cid}\b", named) for e in evaluations)  # every candidate is named once
    assert ax.get_xscale() == "log"
    plt.close(fig)


def test_gate_plot_ticks_are_whole_runs():
    values = (10.0, 10.2, 9.9, 10.1, 10.0, 13.0, 13.1, 12.9)
    v = history.HistoryVerdict("case", "p50_ms", values, tuple(f"s{i}" for i in range(len(values))), (edivisive.ChangePoint(5, 0.01, 1.0),),
                               10.0, 13.0, 0.3, "REGRESSION", True)  # fmt: skip
    fig = plot.plot_history(v, 0.1)
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= len(values)]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    plt.close(fig)
