"""A sizing as people read it: one table per subject (batching on and off side by side), a
sentence that answers the question, and one plot (client cores against event p99)."""

from __future__ import annotations

from pathlib import Path

from axon.names import MODEL_PREFIX
from axon.study.sizing.arithmetic import Given, Measured, Sizing, Span

PLOT_FILE = "size.png"


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _range(trio: list | None, digits: int, pct: bool = False, open_high: bool = False) -> str:
    """``value [low–high]``; a missing high end reads ``low–?``; ``open_high``: the high end is not reached (``)``)."""
    if trio is None:
        return "not measured"
    scale = 100.0 if pct else 1.0
    value, low, high = (None if v is None else v * scale for v in trio)
    unit = "%" if pct else ""
    return f"{_num(value, digits)}{unit} [{_num(low, digits)}–{'?' if high is None else _num(high, digits)}{')' if open_high else ']'}"


def _span(s: Span | None, digits: int, open_high: bool = False) -> str:
    return "not measured" if s is None else _range([s.value, s.low, s.high], digits, open_high=open_high)


def table(given: Given, pairs: list[tuple[Measured, Sizing]]) -> str:
    """One block per subject; a column per batching mode."""
    blocks = []
    for subject in dict.fromkeys(m["subject"] for m, _ in pairs):
        mine = [(m, s) for m, s in pairs if m["subject"] == subject]
        m0 = mine[0][0]
        head = (
            f"{subject}: p99 budget {m0['p99_budget_ms']:g} ms, client work {given.client_ms:g} ms per event per core, "
            f"headroom {given.headroom:.0%}" + (f", link {given.link_gbps:g} Gb/s" if given.link_gbps else "")
        )
        rows: list[tuple[str, list[str]]] = [
            ("capacity within the p99 budget, events/s", [_span(m["capacity_eps"], 0, open_high=True) for m, _ in mine]),
            (
                "usable (less headroom), events/s",
                [
                    _range(s["usable_eps"], 0, open_high=True) + ("  link-limited" if s["limited_by"] == "link" else "")
                    for _, s in mine
                ],
            ),
            ("client CPU per event, offloaded, ms", [_span(m["service_ms"], 3) for m, _ in mine]),
            ("client CPU per event, in-process, ms", [_span(m["direct_ms"], 3) for m, _ in mine]),
            ("client cores one server carries", [_range(s["cores_per_server"], 1, open_high=True) for _, s in mine]),
        ]
        if mine[0][1]["servers_for"]:
            rows.append((f"servers for {mine[0][1]['servers_for']}", [_range(s["servers"], 0) for _, s in mine]))
        if given.event_rate is not None:
            rows.append(("client cores needed, offloaded", [_range(s["cores_needed_offloaded"], 0) for _, s in mine]))
            rows.append(("client cores needed, in-process", [_range(s["cores_needed_in_process"], 0) for _, s in mine]))
        rows += [
            ("CPU saved per event by offloading, ms", [_range(s["saved_ms_per_event"], 3) for _, s in mine]),
            ("farm throughput gain (same cores)", [_range(s["farm_gain"], 1, pct=True) for _, s in mine]),
            ("network per server, Gb/s (tensor bytes)", [_range(s["network_gbps"], 4) for _, s in mine]),
        ]
        width = max(len(label) for label, _ in rows)
        cols = [max(len(f"batching {m['batching']}"), *(len(v[i]) for _, v in rows)) for i, (m, _) in enumerate(mine)]
        lines = [head, " " * width + "  " + "  ".join(f"batching {m['batching']}".ljust(c) for (m, _), c in zip(mine, cols))]
        lines += [label.ljust(width) + "  " + "  ".join(v.ljust(c) for v, c in zip(values, cols)) for label, values in rows]
        lines += [f"  {sentence(m, s)}" for m, s in mine]
        lines.append(
            f"  measured: {m0['source']}; offloaded CPU by the {m0['service_client']}; [low–high] from the repeats, capacity up to the first rate that failed"
        )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def sentence(m: Measured, s: Sizing) -> str:
    """The answer in words, with its range."""
    value, low, high = s["cores_per_server"]
    digits = 1 if value < 10 else 0  # 2.5 cores, not "3"
    upto = f"up to {high:,.{digits}f}" if high is not None else "more not measured"
    saved = s["saved_ms_per_event"]
    pays = (
        ""
        if saved is None
        else (
            f"; offloading saves {saved[0]:.3g} ms of client CPU per event"
            if saved[1] > 0
            else f"; offloading costs the client {-saved[0]:.3g} ms more CPU per event than running it in-process"
            if saved[2] < 0
            else "; whether offloading saves client CPU is within the repeats' spread"
        )
    )
    return (
        f"batching {m['batching']}: one server carries {value:,.{digits}f} client cores within p99 {m['p99_budget_ms']:g} ms "
        f"({low:,.{digits}f} measured to hold, {upto}){pays}."
    )


def as_record(m: Measured) -> dict:
    """A measurement as JSON: each span as [value, low, high]."""
    return {k: [v.value, v.low, v.high] if isinstance(v, Span) else v for k, v in m.items()}


def plot(given: Given, pairs: list[tuple[Measured, Sizing]], verified: list[dict], out: Path) -> Path:
    """Client cores against event p99 per subject and mode, the budget line and the predicted limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (m, s) in enumerate(pairs):
        color = colors[i % len(colors)]
        per_event_ms = given.client_ms + m["service_ms"].value
        points = sorted((rate * per_event_ms / 1e3, p99) for rate, p99 in m["capacity_runs"])
        label = f"{m['subject'].removeprefix(MODEL_PREFIX)}, batching {m['batching']}"
        ax.plot([x for x, _ in points], [y for _, y in points], "o", color=color, alpha=0.7, label=f"{label}: capacity runs")
        ax.axvline(s["cores_per_server"][0], color=color, linestyle=":", linewidth=1.2)
        mine = [v for v in verified if v["subject"] == m["subject"] and v["batching"] == m["batching"]]
        if mine:
            ax.plot(
                [v["client_cores"] for v in mine],
                [v["p99_ms"] for v in mine],
                "D",
                color=color,
                markersize=8,
                markeredgecolor="black",
                label=f"{label}: --verify",
            )
    budget = pairs[0][0]["p99_budget_ms"]
    ax.axhline(budget, color="red", linestyle="--", linewidth=1, label=f"p99 budget {budget:g} ms")
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 30, not 3x10^1
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
    ax.set_xlabel(f"client cores (event rate × {given.client_ms:g} ms work + client CPU per event)")
    ax.set_ylabel("event p99, ms")
    ax.set_title("How many trigger cores one server carries (dotted: predicted limit)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = out / PLOT_FILE
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
