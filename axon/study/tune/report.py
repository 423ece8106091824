"""What a tune leaves behind: the ranked table, the plot, report.md, the winner's config.pbtxt.

Every config written here comes from :mod:`axon.offline.repository` (the one source of configs), built
from the winner's knobs: ``--apply`` writes it into the artifacts' repositories and the GPU
container's repository; without ``--apply`` only ``--out`` is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on our machines; PNGs only
import matplotlib.pyplot as plt

from axon.errors import AxonError
from axon.offline import repository
from axon.records import atomic
from axon.study.tune.confirm import Confirmation, sentence
from axon.study.tune.verdict import NO_WINNER, Budget, Evaluation

RECORD_FILE = "tune.json"
REPORT_FILE = "report.md"
PLOT_FILE = "tune_throughput_p99.png"
WINNER_CONFIG = "config.pbtxt"
HEADERS = (
    "rank",
    "candidate",
    "c",
    "req/s median [min–max]",
    "p50 ms",
    "p99 ms",
    "capacity/s",
    "reload s",
    "vs default",
    "verdict",
)


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def _change(e: Evaluation) -> str:
    if e.status == "default":
        return "baseline"
    change = e.comparison.change
    return "–" if change is None else f"{change:+.1%}"


def _verdict(e: Evaluation, objective: str) -> str:
    if e.status == "failed":
        return e.comparison.reason  # failed to load, or crashed the server
    if objective == "capacity" and e.capacity_comparison is not None:
        head = "BEATS default" if e.capacity_comparison.beats else e.capacity_comparison.reason
        return f"{head} (capacity); throughput: {e.comparison.reason}"
    said = f"BEATS default ({e.comparison.reason})" if e.comparison.beats else e.comparison.reason
    c = e.confirmation
    if c is not None:
        change = "" if c["change"] is None else f" {c['change']:+.0%}"
        said += f"; head-to-head{change}, {'CONFIRMED' if c['held'] else 'not confirmed'}"
    return said


def rows(ranked: Sequence[Evaluation], candidates: Sequence[dict], objective: str = "throughput") -> list[tuple[str, ...]]:
    by_id = {c["id"]: c for c in candidates}
    out = []
    for i, e in enumerate(ranked, 1):
        loads = [ld["seconds"] for ld in by_id[e.cid]["loads"] if ld["ok"]]
        reload_s = f"{min(loads):.2f}–{max(loads):.2f}" if loads else "–"
        p = e.point
        flag = "" if p is None or p.in_budget else " !"
        out.append(
            (
                str(i) if e.status != "failed" else "–",
                f"{e.cid} {e.label}" + (" (default)" if e.status == "default" else ""),
                str(p.concurrency) if p else "–",
                (p.throughput.format() + flag) if p else "–",
                _fmt(p.p50.median, ".2f") if p else "–",
                _fmt(p.p99.median, ".2f") if p else "–",
                _fmt((e.capacity or {}).get("max_rate")),
                reload_s,
                _change(e),
                _verdict(e, objective),
            )
        )
    return out


def text_table(ranked: Sequence[Evaluation], candidates: Sequence[dict], objective: str = "throughput") -> str:
    body = rows(ranked, candidates, objective)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEADERS)]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i in (1, 9) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(HEADERS), "-" * len(line(HEADERS)), *(line(r) for r in body)])


def markdown_table(ranked: Sequence[Evaluation], candidates: Sequence[dict], objective: str = "throughput") -> str:
    body = rows(ranked, candidates, objective)
    align = "|" + "|".join("---" if i in (1, 9) else "---:" for i in range(len(HEADERS))) + "|"
    return "\n".join(["| " + " | ".join(HEADERS) + " |", align, *("| " + " | ".join(r) + " |" for r in body)])


def summary(
    winner: Evaluation | None,
    default: Evaluation,
    budget: Budget,
    objective: str,
    confirmation: Confirmation | None = None,
    evaluations: Sequence[Evaluation] = (),
) -> str:
    """One sentence, Model Analyzer style, with what the head-to-head showed; or the no-winner sentence."""
    if objective == "capacity" and winner is not None and winner.capacity_comparison is not None:
        change = winner.capacity_comparison.change
        more = f", {change:+.0%} against the default" if change is not None else ""
        return f"Winner: {winner.cid} ({winner.label}) holds {winner.capacity['max_rate']:,.0f} req/s open loop under the p99 budget{more} ({winner.capacity_comparison.reason})."
    if winner is None:
        if confirmation is None:
            return NO_WINNER.capitalize() + "."
        nominee = next((e for e in evaluations if e.cid == confirmation["candidate"]), None)
        who = f"{nominee.cid} ({nominee.label})" if nominee else confirmation["candidate"]
        seen = f", {nominee.comparison.reason}" if nominee else ""
        return f"No winner: {who} looked best in the search{seen}, but the {sentence(confirmation, confirmation['candidate'])}."
    p = winner.point
    within = f"within the budget (p50 ≤ {budget.p50_ms:g} ms, p99 ≤ {budget.p99_ms:g} ms)"
    change = winner.comparison.change
    more = (
        f", {change:+.0%} against the default's {default.point.throughput.median:,.0f}"
        if change is not None and default.point
        else ""
    )
    confirmed = f"; confirmed by a {sentence(confirmation, winner.cid)}" if confirmation else ""
    return f"Winner: {winner.cid} ({winner.label}) serves {p.throughput.median:,.0f} req/s at c={p.concurrency} {within}{more} ({winner.comparison.reason}){confirmed}."


def pareto(evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """Points no other point beats on both axes (more throughput and lower p99), by p99."""
    pts = [e for e in evaluations if e.point is not None]
    front = [
        e
        for e in pts
        if not any(
            o.point.throughput.median >= e.point.throughput.median
            and o.point.p99.median <= e.point.p99.median
            and (o.point.throughput.median, o.point.p99.median) != (e.point.throughput.median, e.point.p99.median)
            for o in pts
        )
    ]
    return sorted(front, key=lambda e: e.point.p99.median)


def plot(evaluations: Sequence[Evaluation], budget: Budget, winner: Evaluation | None, model: str):
    """Throughput against p99 at each candidate's operating point, with repeat ranges."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for e in evaluations:
        p = e.point
        if p is None:
            continue
        x, y = p.p99.median, p.throughput.median
        color = "tab:gray" if e.status == "default" else "tab:blue" if p.in_budget else "tab:red"
        ax.errorbar(
            x,
            y,
            xerr=[[x - p.p99.lo], [p.p99.hi - x]],
            yerr=[[y - p.throughput.lo], [p.throughput.hi - y]],
            fmt="s" if e.status == "default" else "o",
            color=color,
            capsize=3,
            alpha=0.85,
        )
    front = pareto(evaluations)
    if front:
        ax.plot(
            [e.point.p99.median for e in front],
            [e.point.throughput.median for e in front],
            "--",
            color="tab:green",
            label="Pareto front",
        )
        ax.scatter(
            [e.point.p99.median for e in front],
            [e.point.throughput.median for e in front],
            s=160,
            facecolors="none",
            edgecolors="tab:green",
        )
    if winner is not None and winner.point is not None:
        ax.scatter(
            [winner.point.p99.median],
            [winner.point.throughput.median],
            marker="*",
            s=320,
            color="gold",
            edgecolors="black",
            zorder=5,
            label=f"winner {winner.cid}",
        )
    ax.axvline(budget.p99_ms, color="red", linewidth=1, linestyle="--", label=f"p99 budget {budget.p99_ms:g} ms")
    # Log x: one candidate's 225 ms worst repeat no longer squashes every other point to the left.
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator

    # Within a decade (the usual case) 1, 2, 5 leave one or two labels: label every step then.
    lo, hi = ax.get_xlim()
    subs = (1, 2, 5) if hi / max(lo, 1e-9) > 10 else (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    _label_points(ax, [(e.cid, e.point.p99.median, e.point.throughput.median) for e in evaluations if e.point is not None])
    ax.scatter([], [], marker="s", color="tab:gray", label="default")
    ax.scatter([], [], marker="o", color="tab:red", label="breaks the budget")
    ax.set_xlabel("p99 latency (ms), median [min–max] over repeats")
    ax.set_ylabel("throughput (requests/s), median [min–max]")
    ax.set_title(f"axon tune: {model}, each candidate at its operating point")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _label_points(ax, points: list[tuple[str, float, float]], near_px: float = 14.0) -> None:
    """One label per cluster of nearby points ("c2, c5"), so labels never print over each other
    (they read as "c25" and "c711" when drawn one per point)."""
    ax.figure.canvas.draw()  # the axes' final limits, so display distances are the ones printed
    to_px = ax.transData.transform
    clusters: list[list[tuple[str, float, float]]] = []
    for cid, x, y in sorted(points, key=lambda p: (-p[2], p[1])):
        px = to_px((x, y))
        for cluster in clusters:
            cx = to_px((cluster[0][1], cluster[0][2]))
            if abs(px[0] - cx[0]) < 3 * near_px and abs(px[1] - cx[1]) < near_px:
                cluster.append((cid, x, y))
                break
        else:
            clusters.append([(cid, x, y)])
    for cluster in clusters:
        names = ", ".join(sorted((c for c, _, _ in cluster), key=lambda c: int(c[1:]) if c[1:].isdigit() else 0))
        ax.annotate(names, (cluster[0][1], cluster[0][2]), textcoords="offset points", xytext=(6, 5), fontsize=8)


def markdown(doc: dict, ranked: Sequence[Evaluation], candidates: Sequence[dict], verdict_line: str) -> str:
    plan, first = doc["plan"], (doc["runs"] or [{}])[0]
    m = first.get("machine") or {}
    engine = (first.get("engine") or {}).get("name", "?")
    failed = [c for c in candidates if c["error"]]
    confirmation = doc.get("confirmation")
    lines = [
        f"## axon tune: {doc['model']}",
        "",
        f"Measured {doc['started'][:10]} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), {doc['server']['backend']} Triton {doc['server'].get('version') or '?'}. "
        f"{len(candidates)} candidates ({doc['strategy']} search), {plan['repeat']} interleaved rounds, concurrencies {', '.join(map(str, plan['concurrencies']))} "
        f"(a sweep stops when throughput gains < 5% or the budget breaks), {plan['warmup_s']:g} s warm-up + {plan['duration_s']:g} s window per run, "
        f"engine {engine}. Budget: p50 ≤ {plan['p50_ms']:g} ms, p99 ≤ {plan['p99_ms']:g} ms. Objective: {plan['objective']}. Took {doc.get('wall_s', 0):.0f} s.",
        "",
        markdown_table(ranked, candidates, plan["objective"]),
        "",
        "`!`: breaks the budget at every concurrency measured (shown at its best throughput); it cannot win. "
        f"Beyond noise: one-sided t on log run throughputs, Holm-Šidák over the candidates tried, at {plan.get('alpha', 0.05):g}; "
        "a winner is crowned only when a fresh interleaved head-to-head against the default confirms it.",
        "",
        f"**{verdict_line}**",
        "",
        f"![throughput vs p99]({PLOT_FILE})",
    ]
    if confirmation:
        lines += [
            "",
            f"Head-to-head ({confirmation['candidate']} against the default, interleaved): default "
            + ", ".join(f"{v:,.0f}" for v in confirmation["default_rps"])
            + f" req/s; {confirmation['candidate']} "
            + ", ".join(f"{v:,.0f}" for v in confirmation["candidate_rps"])
            + f" req/s; {confirmation['reason']}.",
        ]
    if failed:
        lines += ["", "Candidates Triton refused or that crashed it:"] + [
            f"- {c['id']} {c['label']}: {c['error']}" for c in failed
        ]
    for r in doc.get("server_restarts") or []:
        why = f" ({r['reason']})" if r.get("reason") else ""
        lines += [
            "",
            f"Triton went down while loading {r['at_candidate']} (after {r['runs_before']} runs){why} and was restarted; its log: `{Path(r['log']).name}`.",
        ]
    restored = doc.get("restored") or {}
    if restored:
        lines += [
            "",
            f"Afterwards the model was restored to its on-disk config ({restored['method']}, {restored['seconds']:.1f} s; "
            f"same as served before tuning: {'yes' if restored['matches_initial'] else 'NO'}).",
        ]
    return "\n".join(lines) + "\n"


def write_outputs(
    out: Path,
    doc: dict,
    ranked: Sequence[Evaluation],
    candidates: Sequence[dict],
    verdict_line: str,
    budget: Budget,
    winner: Evaluation | None,
    winner_config: str | None,
) -> dict[str, Path]:
    """report.md, the plot and the winner's config.pbtxt (the JSON record is saved as the search goes)."""
    written = {}
    fig = plot(ranked, budget, winner, doc["model"])
    fig.savefig(out / PLOT_FILE, dpi=110)
    plt.close(fig)
    written["plot"] = out / PLOT_FILE
    atomic.write_bytes(out / REPORT_FILE, markdown(doc, ranked, candidates, verdict_line).encode())
    written["report"] = out / REPORT_FILE
    stale = out / WINNER_CONFIG
    if winner_config is not None:
        atomic.write_bytes(stale, winner_config.encode())
        written["config"] = stale
    elif stale.exists():
        stale.unlink()  # an earlier tune's winner must not pass for this one's
    return written


def apply_winner(
    model: str, batching: str, options: repository.ServingOptions, artifacts: Path, gpu_repository: Path
) -> list[Path]:
    """Write the winner's config.pbtxt wherever the model is kept: both targets of the artifacts'
    repositories and the GPU container's repository. Returns the files written."""
    places = [
        (artifacts / "repositories" / target / repository.batching_dir(batching) / model, target) for target in repository.TARGETS
    ] + [(gpu_repository / repository.batching_dir(batching) / model, "gpu")]
    written = []
    for folder, target in places:
        if not folder.is_dir():
            continue  # a repository without this model: nothing of ours to change there
        path = folder / "config.pbtxt"
        try:
            atomic.write_bytes(path, repository.config_text(model, target, batching, options).encode())
        except OSError as exc:
            raise AxonError(f"--apply: cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written
