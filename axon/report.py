"""Tables (markdown) and plots (PNG) from a study's results.

Each plot function returns its matplotlib Figure, so tests check axes and labels rather than
pixels; :func:`write_report` saves them next to report.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on our machines; PNGs only
import matplotlib.pyplot as plt
import numpy as np

from axon import stats
from axon.errors import AxonError
from axon.results import read_results
from axon.study import COMPARE_AT, FALLBACK_P50_MS, FALLBACK_P99_MS, STUDY_FILE, capacity_table

COLORS = {"on": "tab:blue", "off": "tab:orange"}
PLOTS = {
    "sweep": "throughput_p99_vs_concurrency.png",
    "ab": "ab_bars.png",
    "cdf": "latency_cdf.png",
    "rate": "latency_vs_throughput.png",
    "breakdown": "server_breakdown.png",
}


def _part(runs: list[dict], part: str) -> list[dict]:
    return [r for r in runs if r.get("study", {}).get("part") == part]


def _sweep(runs: list[dict], batching: str, model: str = "particle_classifier_v1") -> list[dict]:
    return sorted((r for r in _part(runs, "sweep") if r["batching"] == batching and r["model"] == model), key=lambda r: r["load"]["concurrency"])


def _at(runs: list[dict], model: str, batching: str, concurrency: int) -> dict | None:
    for r in runs:
        if r["model"] == model and r["batching"] == batching and r["load"]["mode"] == "closed" and r["load"]["concurrency"] == concurrency:
            return r
    return None


def _plan(runs: list[dict]) -> dict:
    return next((r["study"]["plan"] for r in runs if "study" in r), {})


def budgets(runs: list[dict]) -> tuple[float, float]:
    plan = _plan(runs)
    return plan.get("p50_budget_ms", FALLBACK_P50_MS), plan.get("p99_budget_ms", FALLBACK_P99_MS)


def compare_at(runs: list[dict]) -> int:
    """The concurrency of the A/B and model comparisons (64 in the standard study)."""
    return _plan(runs).get("compare_at", COMPARE_AT)


def _fmt(value, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


# ----------------------------------------------------------------------------- tables


def ab_table(runs: list[dict], concurrency: int | None = None, model: str = "particle_classifier_v1") -> str:
    concurrency = concurrency or compare_at(runs)
    on, off = _at(runs, model, "on", concurrency), _at(runs, model, "off", concurrency)
    if not on or not off:
        return "_no A/B pair in these results_"
    rows = [("throughput (req/s)", on["throughput_rps"], off["throughput_rps"], 0)]
    rows += [(f"{k} latency (ms)", on["latency_ms"][k], off["latency_ms"][k], 2) for k in ("p50", "p95", "p99")]
    lines = [f"| {model}, c={concurrency} | batching ON | batching OFF | ON / OFF |", "|---|---:|---:|---:|"]
    for name, a, b, digits in rows:
        lines.append(f"| {name} | {_fmt(a, digits)} | {_fmt(b, digits)} | {a / b:.2f}× |")
    return "\n".join(lines)


def sweep_table(runs: list[dict]) -> str:
    lines = ["| concurrency | ON req/s | ON p50 | ON p99 | OFF req/s | OFF p50 | OFF p99 |", "|---:|---:|---:|---:|---:|---:|---:|"]
    on = {r["load"]["concurrency"]: r for r in _sweep(runs, "on")}
    off = {r["load"]["concurrency"]: r for r in _sweep(runs, "off")}
    for c in sorted(set(on) | set(off)):
        cells = []
        for r in (on.get(c), off.get(c)):
            cells += [_fmt(r["throughput_rps"], 0), _fmt(r["latency_ms"]["p50"]), _fmt(r["latency_ms"]["p99"])] if r else ["–"] * 3
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n_latencies in ms_"


def model_table(runs: list[dict], concurrency: int | None = None) -> str:
    concurrency = concurrency or compare_at(runs)
    lines = ["| model | batching | req/s | p50 ms | p99 ms | avg batch |", "|---|---|---:|---:|---:|---:|"]
    for model in sorted({r["model"] for r in runs}):
        for batching in ("on", "off"):
            r = _at(runs, model, batching, concurrency)
            if r:
                sm = r.get("server_metrics") or {}
                lines.append(f"| {model} | {batching} | {_fmt(r['throughput_rps'], 0)} | {_fmt(r['latency_ms']['p50'])} | {_fmt(r['latency_ms']['p99'])} | {_fmt(sm.get('avg_batch_size'), 1)} |")
    return "\n".join(lines)


def breakdown_table(runs: list[dict]) -> str:
    lines = ["| batching | c | avg batch | queue µs | compute in µs | infer µs | out µs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for batching in ("on", "off"):
        for r in _sweep(runs, batching):
            sm = r.get("server_metrics") or {}
            cells = [sm.get(k) for k in ("avg_batch_size", "queue_us_per_request", "compute_input_us_per_request", "compute_infer_us_per_request", "compute_output_us_per_request")]
            lines.append(f"| {batching} | {r['load']['concurrency']} | {_fmt(cells[0], 1)} | " + " | ".join(_fmt(c, 0) for c in cells[1:]) + " |")
    return "\n".join(lines) + "\n\n_per request, from Triton's own counters over each window_"


def capacity_markdown(runs: list[dict]) -> str:
    _, p99_budget = budgets(runs)
    table = capacity_table(runs, p99_budget)
    if not table:
        return "_no capacity search in these results_"
    lines = [f"| model | batching | highest rate with p99 ≤ {p99_budget:g} ms | p99 there | first failing rate | what stopped it |", "|---|---|---:|---:|---:|---|"]
    for (model, batching), e in sorted(table.items()):
        lines.append(f"| {model} | {batching} | {_fmt(e['max_rate'], 0)} req/s | {_fmt(e['p99_at_max'])} ms | {_fmt(e['first_fail'], 0)} | {e['stopped_by'] or '–'} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


def plot_sweep(runs: list[dict]):
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    for batching in ("on", "off"):
        rs = _sweep(runs, batching)
        c = [r["load"]["concurrency"] for r in rs]
        ax_t.plot(c, [r["throughput_rps"] for r in rs], "o-", color=COLORS[batching], label=f"batching {batching}")
        ax_l.plot(c, [r["latency_ms"]["p99"] for r in rs], "o-", color=COLORS[batching], label=f"batching {batching}")
    for ax in (ax_t, ax_l):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency (requests in flight)")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_t.set_ylabel("throughput (inferences/s)")
    ax_t.set_title("Throughput vs concurrency")
    ax_l.set_ylabel("p99 latency (ms)")
    ax_l.set_yscale("log")
    ax_l.set_title("p99 latency vs concurrency")
    fig.tight_layout()
    return fig


def plot_ab(runs: list[dict], concurrency: int | None = None, model: str = "particle_classifier_v1"):
    concurrency = concurrency or compare_at(runs)
    on, off = _at(runs, model, "on", concurrency), _at(runs, model, "off", concurrency)
    if not on or not off:
        raise AxonError("A/B plot needs batching on and off at the same concurrency")
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 2]})
    ax_t.bar(["ON", "OFF"], [on["throughput_rps"], off["throughput_rps"]], color=[COLORS["on"], COLORS["off"]])
    ax_t.set_ylabel("throughput (inferences/s)")
    ax_t.set_title(f"Throughput, c={concurrency}")
    keys = ("p50", "p95", "p99")
    x = np.arange(len(keys))
    ax_l.bar(x - 0.2, [on["latency_ms"][k] for k in keys], 0.4, label="batching ON", color=COLORS["on"])
    ax_l.bar(x + 0.2, [off["latency_ms"][k] for k in keys], 0.4, label="batching OFF", color=COLORS["off"])
    ax_l.set_xticks(x, keys)
    ax_l.set_ylabel("latency (ms)")
    ax_l.set_title(f"Latency, c={concurrency}")
    ax_l.legend()
    fig.tight_layout()
    return fig


def plot_cdf(runs: list[dict], concurrency: int | None = None, model: str = "particle_classifier_v1"):
    concurrency = concurrency or compare_at(runs)
    p50_budget, _ = budgets(runs)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for batching in ("on", "off"):
        r = _at(runs, model, batching, concurrency)
        if r is None:
            continue
        values, counts = stats.histogram_values_seconds(stats.decode(r["histogram"]))
        ax.plot(np.array(values) * 1e3, np.cumsum(counts) / np.sum(counts), color=COLORS[batching], label=f"batching {batching}")
    ax.axvline(p50_budget, color="red", linestyle="--", label=f"budget {p50_budget:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("request latency (ms)")
    ax.set_ylabel("fraction of requests (CDF)")
    ax.set_title(f"Latency CDF, {model}, c={concurrency}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_rate(runs: list[dict]):
    _, p99_budget = budgets(runs)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in _part(runs, "capacity"):
        groups.setdefault((r["model"], r["batching"]), []).append(r)
    for (model, batching), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["load"]["rate"])
        style = "o-" if model.endswith("v1") else "s--"
        ax.plot([r["throughput_rps"] for r in rs], [r["latency_ms"]["p99"] for r in rs], style, color=COLORS[batching], label=f"{model.removeprefix('particle_classifier_')} batching {batching}")
    ax.axhline(p99_budget, color="red", linestyle="--", label=f"p99 budget {p99_budget:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (inferences/s), open loop, Poisson arrivals")
    ax.set_ylabel("p99 latency (ms), from intended send time")
    ax.set_title("Latency vs throughput")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_breakdown(runs: list[dict]):
    parts = [("queue_us_per_request", "queue"), ("compute_input_us_per_request", "compute input"), ("compute_infer_us_per_request", "compute infer"), ("compute_output_us_per_request", "compute output")]
    cases = [r for b in ("on", "off") for r in _sweep(runs, b) if r.get("server_metrics")]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    labels = [f"{r['batching']}\nc={r['load']['concurrency']}" for r in cases]
    bottom = np.zeros(len(cases))
    for key, name in parts:
        values = np.array([r["server_metrics"].get(key) or 0.0 for r in cases])
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom += values
    ax.set_yscale("symlog", linthresh=100)
    ax.set_xlabel("batching mode and concurrency")
    ax.set_ylabel("server time per request (µs)")
    ax.set_title("Where Triton spends each request's time")
    ax.legend()
    fig.tight_layout()
    return fig


def figures(runs: list[dict]) -> dict:
    return {"sweep": plot_sweep(runs), "ab": plot_ab(runs), "cdf": plot_cdf(runs), "rate": plot_rate(runs), "breakdown": plot_breakdown(runs)}


def markdown(runs: list[dict]) -> str:
    first = runs[0]
    m = first["machine"]
    p50_budget, p99_budget = budgets(runs)
    data = first.get("dataset") or {}
    return "\n".join(
        [
            "# axon study",
            "",
            f"Measured {first['timestamp'][:10]} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), "
            f"{first['server']['backend']} Triton {first['server']['version']}, git {str(first.get('git_commit'))[:10]}. "
            f"Data: {data.get('name', '?')} ({data.get('rows', '?')} rows, seed {data.get('seed', '?')}). "
            f"Each case: {first['load']['warmup_s']:g} s warm-up, {first['load']['duration_s']:g} s window. "
            f"Budgets: p50 {p50_budget:g} ms, p99 {p99_budget:g} ms.",
            "",
            f"## Batching ON vs OFF (c={compare_at(runs)})",
            ab_table(runs),
            "",
            f"![A/B]({PLOTS['ab']})",
            "",
            "## Concurrency sweep (v1)",
            sweep_table(runs),
            "",
            f"![sweep]({PLOTS['sweep']})",
            "",
            f"![CDF]({PLOTS['cdf']})",
            "",
            f"## Models at c={compare_at(runs)}",
            model_table(runs),
            "",
            "## Capacity under the p99 budget (open loop, Poisson)",
            capacity_markdown(runs),
            "",
            f"![rate]({PLOTS['rate']})",
            "",
            "## Server-side breakdown",
            breakdown_table(runs),
            "",
            f"![breakdown]({PLOTS['breakdown']})",
            "",
            _flags(runs),
        ]
    )


def _flags(runs: list[dict]) -> str:
    hot = [r for r in runs if r["client"]["client_bound"]]
    behind = [r for r in runs if (r.get("schedule") or {}).get("behind")]
    lines = ["## Measurement notes"]
    lines.append(f"- {len(hot)} of {len(runs)} runs were client-bound (a load-generator process above {runs[0]['client']['threshold_cores']:g} of a core).")
    lines.append(f"- {len(behind)} open-loop runs fell behind their schedule; their rates count as failures in the capacity search.")
    bad = sum(r["correctness"]["mismatches"] for r in runs)
    lines.append(f"- correctness: {sum(r['correctness']['checked'] for r in runs)} sampled responses checked against local onnxruntime, {bad} mismatches.")
    return "\n".join(lines)


def write_report(directory: Path) -> Path:
    """Read ``directory/study.json``; write report.md and the PNGs beside it."""
    path = Path(directory) / STUDY_FILE
    if not path.is_file():
        raise AxonError(f"no {STUDY_FILE} in {directory}; run the study first (`make bench` or `axon study`)")
    runs = read_results(path)
    if not runs:
        raise AxonError(f"{path} holds no runs")
    for key, fig in figures(runs).items():
        fig.savefig(Path(directory) / PLOTS[key], dpi=110)
        plt.close(fig)
    report = Path(directory) / "report.md"
    report.write_text(markdown(runs) + "\n")
    return report
