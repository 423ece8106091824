"""Plots that read in ten seconds (issue 21, section 6): no overlapping labels, no squashed scale, no run 1.5."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from axon.records.repeats import Spread
from axon.study.tune import report as tune_report
from axon.study.tune import verdict
from axon.verdicts import edivisive, history, plot

ROOT = Path(__file__).resolve().parent.parent


def _recorded_tune() -> list[verdict.Evaluation]:
    """The 12 candidates of docs/tune-2026-11-29 (its table's medians); one with a 225 ms worst p99, as recorded."""
    rows = [
        line
        for line in (ROOT / "docs" / "tune-2026-11-29" / "report.md").read_text().splitlines()
        if re.match(r"\| \d+ \| c\d+", line)
    ]
    out = []
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        cid = cells[1].split()[0]
        t = [float(x.replace(",", "")) for x in re.match(r"([\d,]+) \[([\d,]+)–([\d,]+)\]", cells[3]).groups()]
        p99 = float(cells[5])
        point = verdict.Point(int(cells[2]), Spread(t[0], t[1], t[2], 3), Spread(float(cells[4]), float(cells[4]), float(cells[4]), 3),
                              Spread(p99, p99 * 0.8, 225.0 if cid == "c10" else p99 * 1.5, 3), (t[0],), "breaks" not in cells[9], True)  # fmt: skip
        out.append(
            verdict.Evaluation(cid, cid, "default" if cid == "c0" else "measured", point, verdict.Comparison(None, False, ""))
        )
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


# --------------------------------------------------------------------------- the study's plots keep docs/plots.md's promises (issue 26, item 11)

RECORDED_STUDY = ROOT / "docs" / "results-2026-11-29" / "study.json"  # a real study: 140 runs, every part


def _runs(which: str) -> list[dict]:
    """The recorded study, or what `axon bench --sweep` writes: no study plan (so no budgets), one batching mode."""
    from axon.records.results import read_results

    runs = read_results(RECORDED_STUDY)
    if which == "study":
        return runs
    return [{k: v for k, v in r.items() if k != "study"} for r in runs if r["study"]["part"] == "sweep" and r["batching"] == "on"]


def _figures(which: str) -> dict:
    from axon.study.report import plots

    figs = plots.figures(_runs(which))
    assert set(figs) == (
        {"sweep", "ab", "cdf", "rate", "breakdown", "direct"} if which == "study" else {"sweep", "cdf", "breakdown"}
    )
    for fig in figs.values():
        fig.canvas.draw()  # tick labels, wrapped titles and extents as they are saved
    return figs


def _budget(ax, which: str):
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith(f"{which} budget")]
    assert len(lines) == 1, [ln.get_label() for ln in ax.get_lines()]
    assert matplotlib.colors.to_hex(lines[0].get_color()) == matplotlib.colors.to_hex("red")
    return lines[0]


@pytest.mark.parametrize("which", ["study", "bench"])
def test_every_latency_plot_draws_its_budgets(which):
    import statistics

    figs = _figures(which)
    default = "" if which == "study" else " (default)"  # a results file carries no budgets: the study's defaults, said so
    latency_axes = [(key, ax) for key, fig in figs.items() for ax in fig.axes if "latency" in ax.get_xlabel() + ax.get_ylabel()]
    assert {key for key, _ in latency_axes} == set(figs) - {
        "breakdown",
        "direct",
    }  # server time and client CPU are not request latency
    for key, ax in latency_axes:
        p99 = _budget(ax, "p99")
        assert p99.get_label() == f"p99 budget 25 ms{default}" and p99.get_linestyle() == "--"
        if key in ("ab", "cdf"):
            assert _budget(ax, "p50").get_linestyle() == ":"
    # The sweep rings every point over the p99 budget: on a log axis 25.5 ms sits on the 25 ms line.
    runs = [
        r
        for r in _runs(which)
        if r["load"]["mode"] == "closed"
        and r.get("study", {"part": "sweep"})["part"] == "sweep"
        and r["model"] == "particle_classifier_v1"
    ]
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault((r["batching"], r["load"]["concurrency"]), []).append(r["latency_ms"]["p99"])
    over = {(c, statistics.median(v)) for (_, c), v in groups.items() if statistics.median(v) > 25.0}
    assert over  # the recorded study has some (ON at c=256, OFF at c=128 and 256)
    (ring,) = [ln for ln in figs["sweep"].axes[1].get_lines() if ln.get_label() == "over the p99 budget"]
    assert set(zip(ring.get_xdata(), ring.get_ydata())) == over
    # The CDF's guides: where to read p50 and p99, named on the plot.
    (cdf,) = figs["cdf"].axes
    guides = {ln.get_label(): list(ln.get_ydata()) for ln in cdf.get_lines() if "guide" in ln.get_label()}
    assert guides == {"_p50 guide at 0.5": [0.5, 0.5], "_p99 guide at 0.99": [0.99, 0.99]}
    assert {t.get_text() for t in cdf.texts} == {"0.5 (p50)", "0.99 (p99)"}
    assert [ln.get_xdata()[0] for ln in (_budget(cdf, "p50"), _budget(cdf, "p99"))] == [7.0, 25.0]
    for fig in figs.values():
        plt.close(fig)


@pytest.mark.parametrize("which", ["study", "bench"])
def test_titles_fit_inside_their_figure_and_never_overlap(which):
    for key, fig in _figures(which).items():
        renderer = fig.canvas.get_renderer()
        titles = [t for t in [*fig.texts, *(ax.title for ax in fig.axes)] if t.get_text()]
        assert titles, key
        boxes = [t.get_window_extent(renderer) for t in titles]
        for title, box in zip(titles, boxes):
            inside = box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
            assert inside, (key, title.get_text(), box, fig.bbox)
        assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)], key
        plt.close(fig)


@pytest.mark.parametrize("which", ["study", "bench"])
def test_tick_labels_come_in_one_size_and_never_overlap(which):
    for key, fig in _figures(which).items():
        shown = {}
        for n, ax in enumerate(fig.axes):
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
                shown[(n, axis.axis_name)] = labels
                boxes = [t.get_window_extent() for t in labels]
                assert not [
                    (a.get_text(), b.get_text())
                    for i, a in enumerate(labels)
                    for j, b in enumerate(labels)
                    if j > i and boxes[i].overlaps(boxes[j])
                ], (key, n, axis.axis_name)
        sizes = {t.get_fontsize() for labels in shown.values() for t in labels}
        assert len(sizes) == 1, (key, sizes)
        # A log axis that shows labels labels a decade in its view (1, 10, ...), not only 2 and 5.
        for (n, name), labels in shown.items():
            if labels and getattr(fig.axes[n], f"get_{name}scale")() == "log":
                assert {t.get_text() for t in labels} & {"0.1", "1", "10", "100", "1000", "10000", "100000"}, (key, n, name)
        plt.close(fig)
