"""Tables (markdown) and plots (PNG) from a study's results, or from any axon results file.

Each plot function returns its matplotlib Figure, so tests check axes and labels rather than
pixels; :func:`write_report` saves them next to report.md.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on our machines; PNGs only
import matplotlib.pyplot as plt
import numpy as np

from axon.errors import AxonError
from axon.names import DEFAULT_MODEL
from axon.records import answered, repeats, stats
from axon.records.results import benchmark_runs, read_measurements, read_results
from axon.study import report_paths
from axon.study.plan import COMPARE_AT, FALLBACK_P50_MS, FALLBACK_P99_MS, STUDY_FILE, capacity_table

# One colour meaning across the study's figures: blue is batching ON, orange batching OFF, and
# nothing else in these figures is blue or orange (server components are greens and greys,
# budgets red, client-bound black), so a colour never has to be looked up twice.
COLORS = {"on": "tab:blue", "off": "tab:orange", None: "tab:gray"}  # None: an external server's unstated mode
BUDGET_STYLE = {"p50": ":", "p99": "--"}  # both red: dotted p50, dashed p99, on every latency axis
MODEL_STYLE = {"v1": ("o", "-", "x"), "v2": ("s", "--", "+")}  # marker, line, fell-behind marker
COMPONENT_COLORS = ("#2f4f4f", "#8fbc8f", "#556b2f", "#c0c0c0")  # queue, input, infer, output
MODES = ("on", "off", None)
TITLE_ROOM = 0.96  # the share of a figure's width a title may take
PLOTS = {
    "sweep": "throughput_p99_vs_concurrency.png",
    "ab": "ab_bars.png",
    "cdf": "latency_cdf.png",
    "rate": "latency_vs_throughput.png",
    "breakdown": "server_breakdown.png",
    "direct": "direct_vs_service.png",
}


def is_study(runs: list[dict]) -> bool:
    return any("study" in r for r in runs)


def _part(runs: list[dict], part: str) -> list[dict]:
    """A study's part; in any other file (bench, sweep, A/B) closed-loop runs count as the
    sweep and open-loop runs as the rate runs, so each plot finds what applies to it."""
    if is_study(runs):
        return [r for r in runs if r.get("study", {}).get("part") == part]
    mode = {"sweep": "closed", "capacity": "open"}.get(part)
    return [r for r in runs if r["load"]["mode"] == mode]


def main_model(runs: list[dict]) -> str:
    """The model the sweep, A/B and CDF describe: v1 when present (the study's), else the first."""
    models = [r["model"] for r in runs]
    return DEFAULT_MODEL if DEFAULT_MODEL in models else models[0]


CLOSED_PARTS = ("sweep", "models")  # the closed-loop comparisons (not direct-vs-service's c=1 cases)


def _sweep(runs: list[dict], batching: str, model: str = DEFAULT_MODEL) -> dict[int, list[dict]]:
    """concurrency -> the sweep's repeats at it, in concurrency order."""
    out: dict[int, list[dict]] = {}
    for r in sorted((r for r in _part(runs, "sweep") if r["batching"] == batching and r["model"] == model), key=lambda r: r["load"]["concurrency"]):
        out.setdefault(r["load"]["concurrency"], []).append(r)
    return out


def _at(runs: list[dict], model: str, batching: str, concurrency: int) -> list[dict]:
    """Every closed-loop repeat of one case (in a study: the sweep or the model comparison)."""
    study = is_study(runs)

    def comparable(r: dict) -> bool:
        if study:
            return r.get("study", {}).get("part") in CLOSED_PARTS
        return (r.get("engine") or {}).get("name") != "direct"  # in-process runs have no server to compare

    return [
        r
        for r in runs
        if r["model"] == model and r["batching"] == batching and r["load"]["mode"] == "closed" and r["load"]["concurrency"] == concurrency and comparable(r)
    ]


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _plan(runs: list[dict]) -> dict:
    return next((r["study"]["plan"] for r in runs if "study" in r), {})


def budgets(runs: list[dict]) -> tuple[float, float]:
    plan = _plan(runs)
    return plan.get("p50_budget_ms", FALLBACK_P50_MS), plan.get("p99_budget_ms", FALLBACK_P99_MS)


def compare_at(runs: list[dict], model: str | None = None) -> int:
    """The concurrency of the A/B, CDF and model comparisons: the study's (64 in the standard
    study); in other files the highest one with both batching modes, else the highest measured."""
    plan = _plan(runs)
    if "compare_at" in plan:
        return plan["compare_at"]
    closed = [r for r in runs if r["load"]["mode"] == "closed" and r["model"] == (model or main_model(runs))]
    both = {r["load"]["concurrency"] for r in closed if r["batching"] == "on"} & {r["load"]["concurrency"] for r in closed if r["batching"] == "off"}
    found = both or {r["load"]["concurrency"] for r in closed}
    return max(found) if found else COMPARE_AT


def _fmt(value, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


# ----------------------------------------------------------------------------- tables


def ab_table(runs: list[dict], concurrency: int | None = None, model: str | None = None) -> str:
    """ON vs OFF as median [min–max] over repeats; the ratio only where the ranges do not overlap."""
    model = model or main_model(runs)
    concurrency = concurrency or compare_at(runs, model)
    on, off = _at(runs, model, "on", concurrency), _at(runs, model, "off", concurrency)
    if not on or not off:
        return "_no A/B pair in these results_"
    lines = [f"| {model}, c={concurrency} | batching ON | batching OFF | ON / OFF |", "|---|---:|---:|---:|"]
    rows = [("throughput (req/s)", "throughput_rps", ",.0f")] + [(f"{k} latency (ms)", f"{k}_ms", ".2f") for k in ("p50", "p95", "p99")]
    for name, metric, spec in rows:
        ratio = repeats.ratio(on, off, metric)
        lines.append(f"| {name} | {ratio.a.format(spec)} | {ratio.b.format(spec)} | {ratio.format()} |")
    return "\n".join(lines) + f"\n\n_median [min–max] over {len(on)} interleaved runs a side; ON / OFF per pair, or \"within noise\" where the ranges overlap_"


def _cells(group: list[dict] | None) -> list[str]:
    """req/s, p50 and p99 over a case's repeats: "–" where none was measured, "*" where Triton's counts, not h2load's, gave req/s."""
    if not group:
        return ["–"] * 3
    s = repeats.summarise(group)
    cells = [s["throughput_rps"].format(), s["p50_ms"].format(".2f"), s["p99_ms"].format(".2f")]
    cells = [cell.replace("nan", "–") for cell in cells]
    if any(r.get("throughput_basis") == answered.SERVER for r in group):
        cells[0] += "*"
    return cells


def sweep_table(runs: list[dict], model: str | None = None) -> str:
    model = model or main_model(runs)
    groups = {b: _sweep(runs, b, model) for b in MODES}
    modes = [b for b in MODES if groups[b]]
    names = [(b or "?").upper() for b in modes]
    lines = ["| concurrency | " + " | ".join(f"{n} req/s | {n} p50 | {n} p99" for n in names) + " |", "|---:|" + "---:|" * 3 * len(modes)]
    for c in sorted(set().union(*(groups[b] for b in modes))):
        lines.append(f"| {c} | " + " | ".join(cell for b in modes for cell in _cells(groups[b].get(c))) + " |")
    return "\n".join(lines) + "\n\n_median [min–max] over repeats; latencies in ms_"


def model_table(runs: list[dict], concurrency: int | None = None) -> str:
    concurrency = concurrency or compare_at(runs)
    lines = ["| model | batching | req/s | p50 ms | p99 ms | avg batch | engine |", "|---|---|---:|---:|---:|---:|---|"]
    for model in sorted({r["model"] for r in runs}):
        for batching in MODES:
            group = _at(runs, model, batching, concurrency)
            if group:
                batch = _median((r.get("server_metrics") or {}).get("avg_batch_size") for r in group)
                engine = ",".join(sorted({(r.get("engine") or {}).get("name", "?") for r in group}))
                lines.append(f"| {model} | {batching or '?'} | " + " | ".join(_cells(group)) + f" | {_fmt(batch, 1)} | {engine} |")
    return "\n".join(lines)


BREAKDOWN = ("avg_batch_size", "queue_us_per_request", "compute_input_us_per_request", "compute_infer_us_per_request", "compute_output_us_per_request")


def _server_medians(group: list[dict]) -> dict[str, float | None]:
    return {k: _median((r.get("server_metrics") or {}).get(k) for r in group) for k in BREAKDOWN}


def breakdown_table(runs: list[dict]) -> str:
    lines = ["| batching | c | avg batch | queue µs | compute in µs | infer µs | out µs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for batching in MODES:
        for c, group in _sweep(runs, batching, main_model(runs)).items():
            m = _server_medians(group)
            lines.append(f"| {batching or '?'} | {c} | {_fmt(m['avg_batch_size'], 1)} | " + " | ".join(_fmt(m[k], 0) for k in BREAKDOWN[1:]) + " |")
    return "\n".join(lines) + "\n\n_per request, from Triton's own counters over each window; median over repeats_"


def capacity_markdown(runs: list[dict]) -> str:
    _, p99_budget = budgets(runs)
    table = capacity_table(runs, p99_budget)
    if not table:
        return "_no capacity search in these results_"
    lines = [f"| model | batching | arrivals (engine) | highest rate with p99 ≤ {p99_budget:g} ms | runs passing there | p99 there (median) | first failing rate | runs passing there | what stopped it |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for (model, batching, arrivals), e in sorted(table.items()):
        lines.append(
            f"| {model} | {batching} | {arrivals} | {_fmt(e['max_rate'], 0)} req/s | {e['runs_at_max'] or '–'} | {_fmt(e['p99_at_max'])} ms | {_fmt(e['first_fail'], 0)} | {e['runs_at_fail'] or '–'} | {e['stopped_by'] or '–'} |"
        )
    return "\n".join(lines) + "\n\n_a rate holds when at least half of its runs pass; the boundary is confirmed with repeats_"


# ----------------------------------------------------------------------------- direct vs service


def direct_vs_service(runs: list[dict]) -> list[dict]:
    """Per model and rows per request: client CPU per row in-process and through Triton.

    Every number is a median over that case's repeats, computed from the records' own
    ``client.cpu_us_per_row`` and latencies. ``break_even_us_per_row`` is the native client's
    CPU per row for a remote call: a model that costs more than that per row in-process is
    cheaper for the client to offload.
    """
    out = []
    direct = repeats.group(_part(runs, "direct"), key=lambda r: f"{r['model']}|{r['load']['rows_per_request']}")
    service = _part(runs, "service")
    for key, group in direct.items():
        model, rows = key.split("|")
        row = {"model": model, "rows": int(rows), "direct_cpu_us_per_row": _median(r["client"]["cpu_us_per_row"] for r in group)}
        for engine in ("native", "python"):
            svc = [r for r in service if r["model"] == model and r["load"]["rows_per_request"] == int(rows) and r["engine"]["name"] == engine]
            row[f"{engine}_cpu_us_per_row"] = _median(r["client"]["cpu_us_per_row"] for r in svc)
            row[f"{engine}_p50_ms"] = _median(r["latency_ms"]["p50"] for r in svc)
            row[f"{engine}_p99_ms"] = _median(r["latency_ms"]["p99"] for r in svc)
            row[f"{engine}_runs"] = len(svc)
        row["break_even_us_per_row"] = row["native_cpu_us_per_row"]
        out.append(row)
    return out


def _times(a: float | None, b: float | None) -> str:
    return f"{a / b:,.1f}×" if a is not None and b else "–"


def direct_markdown(runs: list[dict]) -> str:
    rows = direct_vs_service(runs)
    if not rows:
        return "_no direct-vs-service cases in these results_"
    lines = [
        "| model | rows/request | direct CPU µs/row | service CPU µs/row, native client | service CPU µs/row, python client | service p50 ms (native) | service p99 ms (native) | break-even model cost µs/row |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['rows']} | {_fmt(r['direct_cpu_us_per_row'], 3)} | {_fmt(r['native_cpu_us_per_row'], 3)} | {_fmt(r['python_cpu_us_per_row'], 3)} "
            f"| {_fmt(r['native_p50_ms'], 3)} | {_fmt(r['native_p99_ms'], 3)} | {_fmt(r['break_even_us_per_row'], 3)} |"
        )
    lines += ["", "_client CPU = the client process's user+system time per row (direct: onnxruntime, 1 thread, in-process; service: Triton batching on, "
              "one request in flight); median over repeats. Offloading saves client CPU for a model that costs more per row in-process than the break-even._", ""]
    lines += direct_sentences(rows)
    return "\n".join(lines)


def direct_sentences(rows: list[dict]) -> list[str]:
    """One plain sentence per model: what a remote call costs the client against the inference."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["rows"])
        short = model.removeprefix("particle_classifier_")
        first = mine[0]
        # Without h2load (or with --engine python) there is no native client: judge by the python one, and say so.
        client = "native" if any(r["native_cpu_us_per_row"] for r in mine) else "python"
        key = f"{client}_cpu_us_per_row"
        ratios = ", ".join(f"{_times(r[key], r['direct_cpu_us_per_row'])} at {r['rows']}" for r in mine)
        pays = [r["rows"] for r in mine if r[key] and r["direct_cpu_us_per_row"] and r[key] < r["direct_cpu_us_per_row"]]
        verdict = (f"from {pays[0]} rows per request on, offloading {short} saves client CPU" if pays
                   else f"at no measured request size does offloading {short} save client CPU")
        if client == "python":
            other = "(no native client was measured: a native one costs less)"
        elif first["python_cpu_us_per_row"]:
            other = f"({_times(first['python_cpu_us_per_row'], first['direct_cpu_us_per_row'])} with a Python one)"
        else:
            other = "(no Python client was measured: --engine native)"
        out.append(
            f"- For {short}, a remote call costs the client {_times(first[key], first['direct_cpu_us_per_row'])} the CPU of running the model "
            f"in-process at {first['rows']} row per request with a {client} client {other}; "
            f"per row and {client} client: {ratios} rows per request. So {verdict}."
        )
    return out


# ----------------------------------------------------------------------------- plots


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
        groups = _sweep(runs, batching, model)
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
    _label_decades(ax_l.yaxis)
    ax_l.set_title(f"{short}: p99 latency vs concurrency")
    fig.tight_layout()
    return fig


def plot_ab(runs: list[dict], concurrency: int | None = None, model: str | None = None):
    model = model or main_model(runs)
    concurrency = concurrency or compare_at(runs, model)
    on, off = _at(runs, model, "on", concurrency), _at(runs, model, "off", concurrency)
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
        bars = ax_l.bar(x + shift, [s.median for s in spreads], 0.4, yerr=err(spreads), capsize=3, label=f"batching {name.upper()}", color=COLORS[name])
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
        group = [r for r in _at(runs, model, batching, concurrency) if r["latency_ms"]["count"]]
        if not group:
            continue
        # All repeats pooled: an exact merge of their histograms.
        values, counts = stats.histogram_values_seconds(stats.merge([r["histogram"] for r in group]))
        ax.plot(np.array(values) * 1e3, np.cumsum(counts) / np.sum(counts), color=COLORS[batching], label=f"batching {batching or '?'}")
    for which in ("p50", "p99"):
        _budget_line(ax, runs, which, axis="x")
    # Where to read p50 and p99: a curve crossing 0.5 left of the dotted line meets the p50
    # budget; one reaching 0.99 left of the dashed line meets the p99 budget.
    for level, name in ((0.5, "p50"), (0.99, "p99")):
        ax.axhline(level, color="gray", linewidth=0.8, alpha=0.6, label=f"_{name} guide at {level:g}")  # "_": not in the legend
        # Named at the right edge: the 0.99 guide runs just under the 1.0 grid line.
        ax.text(0.995, level, f"{level:g} ({name})", transform=ax.get_yaxis_transform(), ha="right", va="top", color="dimgray", fontsize=8)
    ax.set_xscale("log")
    _label_decades(ax.xaxis)
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
    line(value, color="red", linestyle=BUDGET_STYLE[which], linewidth=1.2, label=f"{which} budget {value:g} ms{'' if _plan(runs) else ' (default)'}")


def _mark_over_budget(ax, runs: list[dict], model: str) -> None:
    """A red ring around each sweep point whose median p99 is over the p99 budget: on a log axis
    25.5 ms sits on a 25 ms line, and only the ring says which side of it the point is."""
    _, p99_budget = budgets(runs)
    over = [(c, s.median) for b in MODES for c, group in _sweep(runs, b, model).items() if (s := repeats.summarise(group)["p99_ms"]).median > p99_budget]
    if over:
        ax.plot(*zip(*over), "o", markersize=13, markerfacecolor="none", markeredgecolor="red", markeredgewidth=1.5, label="over the p99 budget")


# Minor labels (2 and 5 between decades) only on an axis of at most this many decades: beyond
# it they would crowd the decades' own labels.
MINOR_LABELS_MAX_DECADES = 3.5


def _label_decades(axis) -> None:
    """On a log axis, a label at every decade (0.1, 1, 10, 100) and, where room allows, at 2 and
    5 between them, all in one size: not only the one or two decades matplotlib labels by default."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def minor(v: float, _pos) -> str:
        low, high = sorted(axis.get_view_interval())
        room = low > 0 and math.log10(high / low) <= MINOR_LABELS_MAX_DECADES
        return f"{v:g}" if room else ""

    axis.set_major_locator(LogLocator(base=10, numticks=20))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=(2, 5), numticks=20))
    axis.set_minor_formatter(FuncFormatter(minor))
    axis.set_tick_params(which="minor", labelsize=matplotlib.rcParams[f"{axis.axis_name}tick.labelsize"])  # one size with the decades'


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
    for r in _part(runs, "capacity"):
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
            ax.plot(xs, ys, line, color=COLORS[batching], label=f"{short} batching {batching or '?'}, {arrivals}: median per offered rate")
            ok = [r for r in rs if not (r.get("schedule") or {}).get("behind")]
            behind = [r for r in rs if (r.get("schedule") or {}).get("behind")]
            ax.plot([r["throughput_rps"] for r in ok], [r["latency_ms"]["p99"] for r in ok], marker, color=COLORS[batching], alpha=0.6, linestyle="none")
            if behind:
                any_behind.add(short)
                ax.plot([r["throughput_rps"] for r in behind], [r["latency_ms"]["p99"] for r in behind], behind_marker, color=COLORS[batching],
                        markersize=10, markeredgewidth=2, linestyle="none")
        _budget_line(ax, runs, "p99", axis="y")
        ax.set_yscale("log")
        _label_decades(ax.yaxis)
        ax.set_xlabel("achieved throughput (req/s)")
        ax.set_title(f"{arrivals} arrivals")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("p99 latency (ms), from intended send time")
    handles = [Line2D([], [], color=COLORS[b], linewidth=6, label=f"batching {(b or '?').upper()}") for b in sorted(modes_seen, key=MODES.index)]
    for short in models_seen:
        marker, line, behind_marker = MODEL_STYLE.get(short, ("D", "-.", "1"))
        handles.append(Line2D([], [], color="black", marker=marker, linestyle=line, label=f"{short}: one run; line = median per offered rate"))
        if short in any_behind:
            handles.append(Line2D([], [], color="black", marker=behind_marker, markersize=10, markeredgewidth=2, linestyle="none",
                                  label=f"{short}: the sender fell behind its schedule"))
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
    parts = [("queue_us_per_request", "queue"), ("compute_input_us_per_request", "compute input"), ("compute_infer_us_per_request", "compute infer"), ("compute_output_us_per_request", "compute output")]
    model = main_model(runs)
    per_mode = {b: [(c, _server_medians(g)) for c, g in _sweep(runs, b, model).items() if any(r.get("server_metrics") for r in g)] for b in MODES}
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
        _label_decades(ax.yaxis)
        ax.set_title(f"batching {(batching or '?').upper()}", color=COLORS[batching], fontweight="bold")
        ax.set_xlabel("concurrency")
        ax.grid(alpha=0.3, axis="y", which="both")
    axes[0][0].set_ylabel("server time per request (µs, log)")
    axes[0][-1].legend(fontsize=8)
    _fit_suptitle(fig, f"{model.removeprefix('particle_classifier_')}: where Triton spends each request's time (median over repeats)")
    fig.tight_layout()
    return fig


def _fit_suptitle(fig, title: str) -> None:
    """The figure's title, wrapped until it fits the figure's width: one panel (a bench file of
    one batching mode) is narrower than a title written for two. Measured with the renderer,
    so a long model name wraps too; text and figure scale together, so it fits at any dpi."""
    import textwrap

    text = fig.suptitle(title)
    renderer = fig.canvas.get_renderer()
    width = len(title)
    while text.get_window_extent(renderer).width > TITLE_ROOM * fig.bbox.width and width > 10:
        width = int(width * 0.85)
        text.set_text(textwrap.fill(title, width))


def plot_direct(runs: list[dict]):
    """Client CPU per row against rows per request, direct vs service, one panel per model (log-log)."""
    rows = direct_vs_service(runs)
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(5 * max(len(models), 1), 4), squeeze=False)
    styles = {"direct_cpu_us_per_row": ("direct (in-process, 1 thread)", "k-o"), "native_cpu_us_per_row": ("service, native client", "C2-s"), "python_cpu_us_per_row": ("service, python client", "C4-^")}  # green, purple: not ON/OFF's colours
    for ax, model in zip(axes[0], models):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["rows"])
        for key, (label, style) in styles.items():
            points = [(r["rows"], r[key]) for r in mine if r[key]]
            if points:
                ax.plot(*zip(*points), style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([r["rows"] for r in mine], [str(r["rows"]) for r in mine])
        _label_decades(ax.yaxis)
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
    closed = [r for r in _part(runs, "sweep") if r["model"] == model]
    c = compare_at(runs, model)
    out = {}
    if len({r["load"]["concurrency"] for r in closed}) < 2:
        out["sweep"] = f"needs closed-loop runs of {model} at two or more concurrencies (`axon bench --sweep`)"
    if not (_at(runs, model, "on", c) and _at(runs, model, "off", c)):
        out["ab"] = "needs batching on and off at the same concurrency (`axon bench --ab`)"
    if not any(_at(runs, model, b, c) for b in MODES):
        out["cdf"] = "needs closed-loop runs"
    if not _part(runs, "capacity"):
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
    if _part(measured, "direct"):
        figs["direct"] = plot_direct(measured)
    if report_paths.path_runs(runs):
        figs["path"] = report_paths.plot(runs, budgets(runs)[1])
    return figs


def cases_table(runs: list[dict]) -> str:
    """Every case in the file: median [min–max] over its repeats, and what its runs said."""
    lines = ["| case | runs | req/s | p50 ms | p99 ms | engine | verdict |", "|---|---:|---:|---:|---:|---|---|"]
    for key, group in repeats.group(runs).items():
        engine = ",".join(sorted({(r.get("engine") or {}).get("name", "?") for r in group}))
        verdicts = [v for r in group for v in r["verdicts"] + ([r["incomplete_reason"]] if r["incomplete_reason"] else [])]
        unchecked = not all(r["correctness"].get("enabled", True) for r in group)
        verdict = "; ".join(dict.fromkeys(verdicts)) or ("unchecked" if unchecked else "ok")
        if any(r["client"]["client_bound"] for r in group):
            verdict += " [client-bound]"
        lines.append(f"| {key} | {len(group)} | " + " | ".join(_cells(group)) + f" | {engine} | {verdict} |")
    return "\n".join(lines) + "\n\n_median [min–max] over repeats_"


def _image(key: str, skip: dict[str, str], said: set[str]) -> str:
    said.add(key)
    return _not_drawn(key, skip) if key in skip else f"![{key}]({PLOTS[key]})"


def _not_drawn(key: str, skip: dict[str, str]) -> str:
    return f"_{PLOTS[key]} not drawn: {skip[key]}_"


def markdown(runs: list[dict], source: str | None = None) -> str:
    """report.md: a study's full report, or for any other results file the parts that apply."""
    first = runs[0]
    m = first["machine"]
    p50_budget, p99_budget = budgets(runs)
    data = first.get("dataset") or {}
    study = is_study(runs)
    model = main_model(runs)
    c = compare_at(runs, model)
    skip = not_drawn(runs)
    said: set[str] = set()
    repeat = f"{_plan(runs).get('repeat', 1)} interleaved repeats (ON, OFF, ON, OFF, ...). " if study else ""
    lines = [
        "# axon study" if study else f"# axon results{f': {source}' if source else ''}",
        "",
        f"Measured {first['timestamp'][:10]} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), "
        f"{first['server']['backend']} Triton {first['server']['version']}, git {str(first.get('git_commit'))[:10]}. "
        f"Data: {data.get('name', '?')} ({data.get('rows', '?')} rows, seed {data.get('seed', '?')}). "
        f"Each case: {first['load']['warmup_s']:g} s warm-up, {first['load']['duration_s']:g} s window"
        f"{', ' + repeat if repeat else '. '}Engines: {_engines(runs)}." + (f" Budgets: p50 {p50_budget:g} ms, p99 {p99_budget:g} ms." if study
           else f" Budget lines: p50 {p50_budget:g} ms, p99 {p99_budget:g} ms, the study's defaults (a results file carries no budgets)."),
        "",
    ]
    if not study:
        lines += ["## Cases", cases_table(runs), ""]
    if study or "ab" not in skip:
        lines += [f"## Batching ON vs OFF (c={c})", ab_table(runs), "", _image("ab", skip, said), ""]
    if study or "sweep" not in skip:
        lines += [f"## Concurrency sweep ({model.removeprefix('particle_classifier_')})", sweep_table(runs), "", _image("sweep", skip, said), ""]
    lines += [_image("cdf", skip, said), ""]
    if study or len({r["model"] for r in runs}) > 1:
        lines += [f"## Models at c={c}", model_table(runs, c), ""]
    if study:
        lines += ["## Capacity under the p99 budget (open loop: constant spacing on the native engine, Poisson on the python engine)", capacity_markdown(runs), ""]
    if study or "rate" not in skip:
        lines += ([] if study else ["## Open loop: latency vs throughput"]) + [_image("rate", skip, said), ""]
    if _part(runs, "direct"):
        lines += ["## Direct vs service", direct_markdown(runs), "", f"![direct]({PLOTS['direct']})", ""]
    if study or "breakdown" not in skip:
        lines += ["## Server-side breakdown", breakdown_table(runs), "", _image("breakdown", skip, said), ""]
    if report_paths.path_runs(runs):
        lines += ["## Trigger paths", report_paths.markdown(runs, p99_budget), f"![path]({report_paths.PLOT_FILE})", ""]
    unsaid = [key for key in PLOTS if key in skip and key not in said]
    if unsaid:
        lines += ["## Plots not drawn", *(f"- {_not_drawn(key, skip)}" for key in unsaid), ""]
    lines.append(_flags(runs))
    return "\n".join(lines)


def _engines(runs: list[dict]) -> str:
    found: dict[str, int] = {}
    for r in runs:
        e = r.get("engine") or {}
        name = f"{e.get('name', '?')} ({e.get('tool', '?')} {e.get('version', '')})".replace(" )", ")")
        found[name] = found.get(name, 0) + 1
    return ", ".join(f"{name} for {n} runs" for name, n in found.items())


def _flags(runs: list[dict]) -> str:
    hot = [r for r in runs if r["client"]["client_bound"]]
    behind = [r for r in runs if (r.get("schedule") or {}).get("behind")]
    lines = ["## Measurement notes"]
    lines.append(f"- {len(hot)} of {len(runs)} runs were client-bound (a load-generator process above {runs[0]['client']['threshold_cores']:g} of a core).")
    study = " Their rates count as failures in the capacity search." if is_study(runs) else ""
    lines.append(f"- {len(behind)} open-loop runs fell behind their schedule.{study}")
    bad = sum(r["correctness"]["mismatches"] for r in runs)
    lines.append(f"- correctness: {sum(r['correctness']['checked'] for r in runs)} responses checked against local onnxruntime, {bad} mismatches (native runs: the one body, checked before the run).")
    paths = [r for r in runs if r.get("path")]
    if paths:
        agree = sum(bool(r["path"]["verification"]["verified"]) for r in paths)
        lines.append(f"- trigger paths: {agree} of {len(paths)} runs' calls agree, model by model, with Triton's success counters.")
    native_runs = [r for r in runs if r.get("verification") and not r.get("path")]
    unverified = [r for r in native_runs if r["verification"].get("verified") is False]
    if native_runs:
        lines.append(f"- native engine: {len(native_runs) - len(unverified)} of {len(native_runs)} runs verified against Triton's success counter.")
    unconfirmed = [r for r in runs if r.get("throughput_basis") in (answered.SERVER, answered.NONE)]
    if unconfirmed:
        lines.append(
            f"- {len(unconfirmed)} native runs' completions disagreed with Triton's counts (unverified): their req/s is the share Triton "
            "confirmed answered (marked *), or none (–), never h2load's count."
        )
    mixed = [r for r in runs if (r.get("latency_apart") or {}).get("of") == "http_200_unresolved"]
    if mixed:
        lines.append(
            f"- {len(mixed)} native runs show no latency: Triton rejected or failed some of their requests, which h2load counts as "
            "HTTP 200 and cannot tell apart, so no percentile is the answered requests' (the rows are kept under latency_apart)."
        )
    # In-process runs are the reference itself: nothing to check them against, nothing to flag.
    unchecked = [r for r in runs if not r["correctness"].get("enabled", True) and (r.get("engine") or {}).get("name") != "direct"]
    if unchecked:
        reasons = "; ".join(dict.fromkeys(str(r["correctness"].get("reason")) for r in unchecked))
        lines.append(f"- correctness unchecked in {len(unchecked)} of {len(runs)} runs: {reasons}.")
    notices = sorted({r["engine"]["notice"] for r in runs if (r.get("engine") or {}).get("notice")})
    notices += sorted({r["dataset"]["notice"] for r in runs if (r.get("dataset") or {}).get("notice")})
    lines += [f"- notice: {n}" for n in notices]
    return "\n".join(lines)


def load(path: Path) -> tuple[list[dict], Path, str | None]:
    """The runs of a results folder (its study.json) or of any axon results file, where the
    report goes (the folder; beside a file, ``<name>-report/``), and the file's name."""
    path = Path(path)
    if path.is_dir():
        study_file = path / STUDY_FILE
        if not study_file.is_file():
            raise AxonError(f"no {STUDY_FILE} in {path}; give a results file (axon bench --output) or run the study first (`make bench` or `axon study`)")
        return read_results(study_file), path, None
    if not path.exists():
        raise AxonError(f"{path}: no such file or folder")
    kind, payload = read_measurements(path)
    if kind == "other":
        raise AxonError(f"{path}: a JSON object that is neither axon results (schema_version, runs) nor a pytest-benchmark JSON (benchmarks)")
    runs = benchmark_runs(payload, path) if kind == "pytest-benchmark" else payload["runs"]
    return runs, path.parent / f"{path.stem}-report", path.name


def check_out(out: Path) -> None:
    """The report's folder made and written to before any plot is drawn: a folder that can't
    take it (read-only, or under a file) is one line, not a traceback after the work.

    Folders made for the check are removed when it fails.
    """
    import contextlib
    import tempfile

    missing = [p for p in [out, *out.parents] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".axon-probe-"):
            pass
    except OSError as exc:
        for folder in missing:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        blocker = next((a for a in out.parents if a.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None and not blocker.is_dir() else exc.strerror or str(exc)
        raise AxonError(f"cannot write the report to {out}: {why}") from None


def write_report(path: Path, out: Path | None = None) -> Path:
    """Read a study folder, any axon results file or a pytest-benchmark JSON of axon's cases;
    write report.md and the plots that apply.

    Plots that the runs can't support (a sweep of one concurrency, an A/B without both modes)
    are not drawn; report.md says which, and why.
    """
    runs, default_out, source = load(path)
    if not runs:
        raise AxonError(f"{path} holds no runs")
    out = Path(out or default_out)
    check_out(out)
    for key, fig in figures(runs).items():
        fig.savefig(out / PLOTS.get(key, report_paths.PLOT_FILE), dpi=110)  # the path plot is drawn only where there are paths
        plt.close(fig)
    report = out / "report.md"
    report.write_text(markdown(runs, source) + "\n")
    return report
