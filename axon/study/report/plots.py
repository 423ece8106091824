"""The report's figures (PNG): sweep, A/B, latency CDF, open-loop rate, server breakdown, direct vs service.

Each plot function returns its matplotlib Figure, so tests check axes and labels rather than
pixels; :func:`figures` draws those the runs support and :func:`not_drawn` says why the others are not.
"""

from __future__ import annotations

import statistics

import matplotlib.pyplot as plt
import numpy as np

from axon.errors import AxonError
from axon.records import repeats, stats
from axon.study.report import paths
from axon.study.report.selection import (
    MODES,
    budgets,
    closed_repeats,
    compare_at,
    main_model,
    study_part,
    study_plan,
    sweep_by_concurrency,
)
from axon.study.report.style import BUDGET_STYLE, COLORS, COMPONENT_COLORS, MODEL_STYLE, fit_suptitle, label_decades
from axon.study.report.tables import direct_vs_service, server_medians

PLOTS = {
    "sweep": "throughput_p99_vs_concurrency.png",
    "ab": "ab_bars.png",
    "cdf": "latency_cdf.png",
    "rate": "latency_vs_throughput.png",
    "breakdown": "server_breakdown.png",
    "direct": "direct_vs_service.png",
}


def _spread_points(groups: dict[int, list[dict]], metric: str) -> tuple[list[int], list[float], list[list[float]]]:
    """x, medians and [below, above] error bar lengths (min–max over repeats)."""
    xs, ys, lo, hi = [], [], [], []
    for x, group in groups.items():
        s = repeats.summarise(group)[metric]
        xs.append(x)
        ys.append(s.median)
        lo.append(s.median - s.lo)
        hi.append(s.hi - s.median)
    return xs, ys, [lo, hi]


def plot_sweep(runs: list[dict], model: str | None = None):
    model = model or main_model(runs)
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    measured: set[int] = set()
    for batching in MODES:
        groups = sweep_by_concurrency(runs, batching, model)
        if not groups:
            continue
        measured |= set(groups)
        for ax, metric in ((ax_t, "throughput_rps"), (ax_l, "p99_ms")):
            xs, ys, err = _spread_points(groups, metric)
            ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, color=COLORS[batching], label=f"batching {batching or '?'}")
            bound = [(x, y) for x, y in zip(xs, ys) if any(r["client"]["client_bound"] for r in groups[x])]
            if bound:
                ax.plot(*zip(*bound), "x", color="black", markersize=9, label=f"client-bound ({batching or '?'})")
    for ax in (ax_t, ax_l):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(measured), [str(c) for c in sorted(measured)])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.grid(alpha=0.3)
        ax.legend()
    short = model.removeprefix("particle_classifier_")
    ax_t.set_ylabel("throughput (req/s)")
    ax_t.set_title(f"{short}: throughput vs concurrency (median, min–max)")
    _budget_line(ax_l, runs, "p99", axis="y")
    _mark_over_budget(ax_l, runs, model)
    ax_l.legend()
    ax_l.set_ylabel("p99 latency (ms)")
    ax_l.set_yscale("log")
    label_decades(ax_l.yaxis)
    ax_l.set_title(f"{short}: p99 latency vs concurrency")
    fig.tight_layout()
    return fig


def plot_ab(runs: list[dict], concurrency: int | None = None, model: str | None = None):
    model = model or main_model(runs)
    concurrency = concurrency or compare_at(runs, model)
    on, off = closed_repeats(runs, model, "on", concurrency), closed_repeats(runs, model, "off", concurrency)
    if not on or not off:
        raise AxonError("A/B plot needs batching on and off at the same concurrency")
    son, soff = repeats.summarise(on), repeats.summarise(off)
    short = model.removeprefix("particle_classifier_")
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 2]})

    def err(spreads):
        return [[s.median - s.lo for s in spreads], [s.hi - s.median for s in spreads]]

    t = [son["throughput_rps"], soff["throughput_rps"]]
    bars = ax_t.bar(["ON", "OFF"], [s.median for s in t], yerr=err(t), capsize=4, color=[COLORS["on"], COLORS["off"]])
    ax_t.bar_label(bars, labels=[f"{s.median:,.0f}" for s in t], padding=2)
    ax_t.set_ylabel("throughput (req/s)")
    ax_t.set_title(f"{short}: throughput, c={concurrency}")
    keys = ("p50", "p95", "p99")
    x = np.arange(len(keys))
    for shift, summary, name in ((-0.2, son, "on"), (0.2, soff, "off")):
        spreads = [summary[f"{k}_ms"] for k in keys]
        bars = ax_l.bar(
            x + shift,
            [s.median for s in spreads],
            0.4,
            yerr=err(spreads),
            capsize=3,
            label=f"batching {name.upper()}",
            color=COLORS[name],
        )
        ax_l.bar_label(bars, labels=[f"{s.median:.2f}" for s in spreads], padding=2, fontsize=8)
    for which in ("p50", "p99"):
        _budget_line(ax_l, runs, which, axis="y")
    ax_l.set_xticks(x, keys)
    ax_l.set_ylabel("latency (ms)")
    ax_l.set_title(f"{short}: latency, c={concurrency} (median, min–max over {len(on)} runs)")
    # Head room above the tallest bar and the budgets, so the legend covers no bar.
    _, top = ax_l.get_ylim()
    ax_l.set_ylim(0, top * 1.35)
    ax_l.legend(loc="upper left", ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


def plot_cdf(runs: list[dict], concurrency: int | None = None, model: str | None = None):
    model = model or main_model(runs)
    concurrency = concurrency or compare_at(runs, model)
    p50_budget, _ = budgets(runs)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for batching in MODES:
        group = [r for r in closed_repeats(runs, model, batching, concurrency) if r["latency_ms"]["count"]]
        if not group:
            continue
        # All repeats pooled: an exact merge of their histograms.
        values, counts = stats.histogram_values_seconds(stats.merge([r["histogram"] for r in group]))
        ax.plot(
            np.array(values) * 1e3,
            np.cumsum(counts) / np.sum(counts),
            color=COLORS[batching],
            label=f"batching {batching or '?'}",
        )
    for which in ("p50", "p99"):
        _budget_line(ax, runs, which, axis="x")
    # Where to read p50 and p99: a curve crossing 0.5 left of the dotted line meets the p50
    # budget; one reaching 0.99 left of the dashed line meets the p99 budget.
    for level, name in ((0.5, "p50"), (0.99, "p99")):
        ax.axhline(level, color="gray", linewidth=0.8, alpha=0.6, label=f"_{name} guide at {level:g}")  # "_": not in the legend
        # Named at the right edge: the 0.99 guide runs just under the 1.0 grid line.
        ax.text(
            0.995,
            level,
            f"{level:g} ({name})",
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="top",
            color="dimgray",
            fontsize=8,
        )
    ax.set_xscale("log")
    label_decades(ax.xaxis)
    ax.set_xlabel("request latency (ms)")
    ax.set_ylabel("fraction of requests (CDF)")
    ax.set_title(f"Latency CDF, {model}, c={concurrency}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _budget_line(ax, runs: list[dict], which: str, axis: str) -> None:
    """The p50 or p99 budget as a red line (dotted p50, dashed p99) across a latency axis.

    A study's own budgets; any other results file carries none, so the study's defaults are
    drawn, and their label says so.
    """
    p50, p99 = budgets(runs)
    value = p50 if which == "p50" else p99
    line = ax.axhline if axis == "y" else ax.axvline
    line(
        value,
        color="red",
        linestyle=BUDGET_STYLE[which],
        linewidth=1.2,
        label=f"{which} budget {value:g} ms{'' if study_plan(runs) else ' (default)'}",
    )


def _mark_over_budget(ax, runs: list[dict], model: str) -> None:
    """A red ring around each sweep point whose median p99 is over the p99 budget: on a log axis
    25.5 ms sits on a 25 ms line, and only the ring says which side of it the point is."""
    _, p99_budget = budgets(runs)
    over = [
        (c, s.median)
        for b in MODES
        for c, group in sweep_by_concurrency(runs, b, model).items()
        if (s := repeats.summarise(group)["p99_ms"]).median > p99_budget
    ]
    if over:
        ax.plot(
            *zip(*over),
            "o",
            markersize=13,
            markerfacecolor="none",
            markeredgecolor="red",
            markeredgewidth=1.5,
            label="over the p99 budget",
        )


def plot_rate(runs: list[dict]):
    """Capacity search runs, joined in order of offered rate (median p99 per rate); every run a point.

    One panel per arrival process (constant spacing on the native engine, Poisson on the python
    engine): their searches are separate, and one line through both would join unlike runs.
    Colour says the batching mode, marker and line the model; a run whose sender fell behind
    its schedule is drawn with the model's own "fell behind" marker (x for v1, + for v2), so
    the legend needs one entry per meaning, not one per combination.
    """
    from matplotlib.lines import Line2D

    from axon.study.plan import arrivals_label

    by_arrivals: dict[str, list[dict]] = {}
    for r in study_part(runs, "capacity"):
        by_arrivals.setdefault(arrivals_label(r), []).append(r)
    panels = sorted(by_arrivals) or ["constant (native)"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 3.3, 4.2), sharey=True, squeeze=False)
    models_seen: list[str] = []
    modes_seen: list[str | None] = []
    any_behind: set[str] = set()
    for ax, arrivals in zip(axes[0], panels):
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in by_arrivals.get(arrivals, []):
            groups.setdefault((r["model"], r["batching"]), []).append(r)
        for (model, batching), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            short = model.removeprefix("particle_classifier_")
            marker, line, behind_marker = MODEL_STYLE.get(short, ("D", "-.", "1"))
            models_seen += [short] if short not in models_seen else []
            modes_seen += [batching] if batching not in modes_seen else []
            by_rate: dict[float, list[dict]] = {}
            for r in sorted(rs, key=lambda r: r["load"]["rate"]):
                by_rate.setdefault(r["load"]["rate"], []).append(r)
            xs = [statistics.median(r["throughput_rps"] for r in g) for g in by_rate.values()]
            ys = [statistics.median(r["latency_ms"]["p99"] for r in g) for g in by_rate.values()]
            # Labelled for whoever reads the figure's objects; the legend is built from handles below.
            ax.plot(
                xs,
                ys,
                line,
                color=COLORS[batching],
                label=f"{short} batching {batching or '?'}, {arrivals}: median per offered rate",
            )
            ok = [r for r in rs if not (r.get("schedule") or {}).get("behind")]
            behind = [r for r in rs if (r.get("schedule") or {}).get("behind")]
            ax.plot(
                [r["throughput_rps"] for r in ok],
                [r["latency_ms"]["p99"] for r in ok],
                marker,
                color=COLORS[batching],
                alpha=0.6,
                linestyle="none",
            )
            if behind:
                any_behind.add(short)
                ax.plot(
                    [r["throughput_rps"] for r in behind],
                    [r["latency_ms"]["p99"] for r in behind],
                    behind_marker,
                    color=COLORS[batching],
                    markersize=10,
                    markeredgewidth=2,
                    linestyle="none",
                )
        _budget_line(ax, runs, "p99", axis="y")
        ax.set_yscale("log")
        label_decades(ax.yaxis)
        ax.set_xlabel("achieved throughput (req/s)")
        ax.set_title(f"{arrivals} arrivals")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("p99 latency (ms), from intended send time")
    handles = [
        Line2D([], [], color=COLORS[b], linewidth=6, label=f"batching {(b or '?').upper()}")
        for b in sorted(modes_seen, key=MODES.index)
    ]
    for short in models_seen:
        marker, line, behind_marker = MODEL_STYLE.get(short, ("D", "-.", "1"))
        handles.append(
            Line2D(
                [], [], color="black", marker=marker, linestyle=line, label=f"{short}: one run; line = median per offered rate"
            )
        )
        if short in any_behind:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="black",
                    marker=behind_marker,
                    markersize=10,
                    markeredgewidth=2,
                    linestyle="none",
                    label=f"{short}: the sender fell behind its schedule",
                )
            )
    handles.append(next(line for line in axes[0][-1].get_lines() if line.get_label().startswith("p99 budget")))
    fig.suptitle("Latency vs throughput, open loop (capacity search)")
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def plot_breakdown(runs: list[dict]):
    """Triton's time per request by component: one panel per batching mode, bars side by side on a log axis.

    A shared linear axis reaching OFF's 75,000 µs queue hid every ON bar at c <= 16; on a log
    axis each component of each case is readable, and side-by-side bars (not stacked ones,
    which a log axis distorts) keep every value true. The component colours are greens and
    greys: blue and orange mean batching ON and OFF in every figure of the study.
    """
    parts = [
        ("queue_us_per_request", "queue"),
        ("compute_input_us_per_request", "compute input"),
        ("compute_infer_us_per_request", "compute infer"),
        ("compute_output_us_per_request", "compute output"),
    ]
    model = main_model(runs)
    per_mode = {
        b: [
            (c, server_medians(g))
            for c, g in sweep_by_concurrency(runs, b, model).items()
            if any(r.get("server_metrics") for r in g)
        ]
        for b in MODES
    }
    per_mode = {b: cases for b, cases in per_mode.items() if cases}
    if not per_mode:
        raise AxonError("no server metrics to break down")
    fig, axes = plt.subplots(1, len(per_mode), figsize=(5.5 * len(per_mode), 4.2), sharey=True, squeeze=False)
    width = 0.8 / len(parts)
    for ax, (batching, cases) in zip(axes[0], per_mode.items()):
        x = np.arange(len(cases))
        for k, ((key, name), color) in enumerate(zip(parts, COMPONENT_COLORS)):
            values = [m.get(key) or np.nan for _, m in cases]
            ax.bar(x + (k - (len(parts) - 1) / 2) * width, values, width, label=name, color=color)
        ax.set_xticks(x, [f"c={c}" for c, _ in cases])
        ax.set_yscale("log")
        label_decades(ax.yaxis)
        ax.set_title(f"batching {(batching or '?').upper()}", color=COLORS[batching], fontweight="bold")
        ax.set_xlabel("concurrency")
        ax.grid(alpha=0.3, axis="y", which="both")
    axes[0][0].set_ylabel("server time per request (µs, log)")
    axes[0][-1].legend(fontsize=8)
    fit_suptitle(
        fig, f"{model.removeprefix('particle_classifier_')}: where Triton spends each request's time (median over repeats)"
    )
    fig.tight_layout()
    return fig


def plot_direct(runs: list[dict]):
    """Client CPU per row against rows per request, direct vs service, one panel per model (log-log)."""
    rows = direct_vs_service(runs)
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(5 * max(len(models), 1), 4), squeeze=False)
    styles = {
        "direct_cpu_us_per_row": ("direct (in-process, 1 thread)", "k-o"),
        "native_cpu_us_per_row": ("service, native client", "C2-s"),
        "python_cpu_us_per_row": ("service, python client", "C4-^"),
    }  # green, purple: not ON/OFF's colours
    for ax, model in zip(axes[0], models):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["rows"])
        for key, (label, style) in styles.items():
            points = [(r["rows"], r[key]) for r in mine if r[key]]
            if points:
                ax.plot(*zip(*points), style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([r["rows"] for r in mine], [str(r["rows"]) for r in mine])
        label_decades(ax.yaxis)
        ax.set_xlabel("rows per request")
        ax.set_ylabel("client CPU per row (µs)")
        ax.set_title(f"{model.removeprefix('particle_classifier_')}: client CPU per row, direct vs service")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _measured(runs: list[dict]) -> list[dict]:
    """Runs with at least one successful request: the others have no latency to draw."""
    return [r for r in runs if r["requests"]["ok"] > 0 and r["latency_ms"]["count"]]


def not_drawn(runs: list[dict]) -> dict[str, str]:
    """The plots these runs can't support, each with the reason the report gives instead."""
    runs = _measured(runs)
    if not runs:
        return dict.fromkeys(PLOTS, "no run measured a successful request")
    model = main_model(runs)
    closed = [r for r in study_part(runs, "sweep") if r["model"] == model]
    c = compare_at(runs, model)
    out = {}
    if len({r["load"]["concurrency"] for r in closed}) < 2:
        out["sweep"] = f"needs closed-loop runs of {model} at two or more concurrencies (`axon bench --sweep`)"
    if not (closed_repeats(runs, model, "on", c) and closed_repeats(runs, model, "off", c)):
        out["ab"] = "needs batching on and off at the same concurrency (`axon bench --ab`)"
    if not any(closed_repeats(runs, model, b, c) for b in MODES):
        out["cdf"] = "needs closed-loop runs"
    if not study_part(runs, "capacity"):
        out["rate"] = "needs open-loop runs (`axon bench --rate`)"
    if not any(r.get("server_metrics") for r in closed):
        out["breakdown"] = "needs closed-loop runs with Triton's metrics (a server axon starts, or --metrics-url)"
    return out


def figures(runs: list[dict]) -> dict:
    """The plots that apply to these runs (see :func:`not_drawn` for the others), by key of PLOTS."""
    draw = {"sweep": plot_sweep, "ab": plot_ab, "cdf": plot_cdf, "rate": plot_rate, "breakdown": plot_breakdown}
    skip = not_drawn(runs)
    measured = _measured(runs)
    figs = {key: plot(measured) for key, plot in draw.items() if key not in skip}
    if study_part(measured, "direct"):
        figs["direct"] = plot_direct(measured)
    if paths.path_runs(runs):
        figs["path"] = paths.plot(runs, budgets(runs)[1])
    return figs
