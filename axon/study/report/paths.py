"""The report's trigger-path section: events per second against the event's p99, the steps' shares, ON vs OFF.

A path's record is a run record whose ``model`` is ``path:<name>`` (see docs/paths.md), so
the general tables already list it; this section adds what only a path has.
"""

from __future__ import annotations

import statistics

import matplotlib.pyplot as plt

from axon.records import repeats
from axon.study.report.style import COLORS

PATH_PREFIX = "path:"
PLOT_FILE = "path_p99_vs_events.png"


def path_runs(runs: list[dict]) -> list[dict]:
    """The trigger-path runs that measured at least one event."""
    return [r for r in runs if str(r.get("model", "")).startswith(PATH_PREFIX) and r.get("path") and r["latency_ms"]["count"]]


def _load(r: dict) -> str:
    load = r["load"]
    return f"c={load['concurrency']}" if load["mode"] == "closed" else f"{load['rate']:g}/s {load['distribution']}"


def _spread(values: list[float], fmt: str = ",.0f") -> str:
    return repeats.Spread.of(values).format(fmt) if values else "–"


def markdown(runs: list[dict], p99_budget_ms: float) -> str:
    """Per path: each case's events/s and event latency, Triton's check, the steps' shares, and ON/OFF."""
    mine = path_runs(runs)
    out = []
    for name in dict.fromkeys(r["model"] for r in mine):
        group = [r for r in mine if r["model"] == name]
        first = group[0]["path"]
        steps = " → ".join(
            " ∥ ".join(f"{c['model'].removeprefix('particle_classifier_')}×{c['rows']}" for c in s["calls"])
            for s in first["steps"]
        )
        out += [
            f"### {name.removeprefix(PATH_PREFIX)}: {steps}",
            "",
            "| batching | load | runs | events/s | event p50 ms | event p99 ms | within p99 budget | Triton's counts |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
        cases: dict[tuple, list[dict]] = {}
        for r in group:
            cases.setdefault((r.get("batching"), _load(r)), []).append(r)
        for (batching, load), rs in cases.items():
            p99 = [r["latency_ms"]["p99"] for r in rs]
            held = sum(v <= p99_budget_ms for v in p99)
            verified = sum(bool(r["path"]["verification"]["verified"]) for r in rs)
            out.append(
                f"| {batching or '?'} | {load} | {len(rs)} | {_spread([r['throughput_rps'] for r in rs])} | {_spread([r['latency_ms']['p50'] for r in rs], '.2f')} "
                f"| {_spread(p99, '.2f')} | {held} of {len(rs)} | {verified} of {len(rs)} agree |"
            )
        out += ["", "_median [min–max] over repeats; events/s = events that got every answer, per second of the window_", ""]
        out += _steps(group) + _ab(cases)
    return "\n".join(out)


def _steps(group: list[dict]) -> list[str]:
    """The median over runs of each step's slowest call p50, and its share of their sum."""
    n = len(group[0]["path"]["step_latency"])
    lines = ["| step | calls | client ms | slowest call p50 ms | share |", "|---:|---|---:|---:|---:|"]
    for s in range(n):
        p50 = [r["path"]["step_latency"][s]["slowest_call_p50_ms"] for r in group]
        share = [
            r["path"]["step_latency"][s]["share_of_calls_p50"]
            for r in group
            if r["path"]["step_latency"][s]["share_of_calls_p50"] is not None
        ]
        calls = ", ".join(
            f"{c['model'].removeprefix('particle_classifier_')}×{c['rows']}" for c in group[0]["path"]["steps"][s]["calls"]
        )
        lines.append(
            f"| {s + 1} | {calls} | {group[0]['path']['steps'][s]['client_ms']:g} | {statistics.median(p50):.2f} | {statistics.median(share):.0%} |"
            if share
            else f"| {s + 1} | {calls} | {group[0]['path']['steps'][s]['client_ms']:g} | {statistics.median(p50):.2f} | – |"
        )
    return ["The event's time by step (the slowest call of a step is what the event waits for):", "", *lines, ""]


def _ab(cases: dict[tuple, list[dict]]) -> list[str]:
    """ON against OFF at each load both were measured at: events/s and event p99, as ratios with their spread."""
    lines = []
    for load in dict.fromkeys(load for _, load in cases):
        on, off = cases.get(("on", load)), cases.get(("off", load))
        if on and off:
            rate, p99 = repeats.ratio(on, off), repeats.ratio(on, off, "p99_ms")
            lines.append(f"- {load}: batching ON/OFF events/s {rate.format()}, event p99 {p99.format()}")
    return (["Batching ON against OFF for the whole path:", "", *lines, ""]) if lines else []


def plot(runs: list[dict], p99_budget_ms: float):
    """Event p99 against events per second, one line per path and batching mode, the budget in red."""
    mine = path_runs(runs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["model"] for r in mine):
        for batching in dict.fromkeys(r.get("batching") for r in mine if r["model"] == name):
            rs = sorted(
                (r for r in mine if r["model"] == name and r.get("batching") == batching), key=lambda r: r["throughput_rps"]
            )
            ax.plot(
                [r["throughput_rps"] for r in rs],
                [r["latency_ms"]["p99"] for r in rs],
                "o-",
                color=COLORS.get(batching, "tab:gray"),
                label=f"{name.removeprefix(PATH_PREFIX)}, batching {batching or '?'}",
            )
    ax.axhline(p99_budget_ms, color="red", linestyle="--", linewidth=1.2, label=f"p99 budget {p99_budget_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("events per second (every answer received)")
    ax.set_ylabel("event p99 latency (ms)")
    ax.set_title("Trigger path: event p99 against events per second")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
