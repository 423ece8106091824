"""The soak's pieces: RSS sampling of client and server, the pass criteria, and its JSON, plot and table.

Design: ONE long run (``run_case`` with ``timeline_s`` = one minute), not consecutive 1-minute
runs. One gRPC channel and one set of workers live through the whole soak, so a leak in a
long-lived client shows, and the load never pauses between minutes (consecutive runs would
rebuild the channel and rest the server a moment each minute). Each minute's throughput and
p99 come from that minute's own HDR histogram (by send time, as the window itself).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RSS_GROWTH_LIMIT = 0.05  # RSS may grow less than 5% after the first slice
THROUGHPUT_DRIFT_LIMIT = 0.20  # the last slice's throughput within 20% of the first's
MIB = 2**20


def tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (tritonserver and its python-backend stubs, say)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss(processes: list[psutil.Process]) -> int:
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue  # a process that ended between the listing and the reading
    return total


@dataclass
class RssSampler:
    """Samples the RSS of the client (this process and its children, the server's tree excepted)
    and of the server (its process tree) every ``every_s`` seconds, in a thread."""

    server_pid: int | None
    every_s: float
    samples: list[dict] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> dict:
        server = tree(self.server_pid) if self.server_pid else []
        server_pids = {p.pid for p in server}
        me = psutil.Process()
        client = [me, *(c for c in me.children(recursive=True) if c.pid not in server_pids)]
        return {
            "t_mono": time.monotonic(),
            "client_rss": rss(client),
            "server_rss": rss(server) if server else None,
            "client_processes": len(client),
            "server_processes": len(server),
        }

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.sample())
            next_at += self.every_s
            self._stop.wait(max(next_at - time.monotonic(), 0.0))

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self.samples.append(self.sample())  # one at the end, whatever the phase


def criteria(record: dict, samples: list[dict], slice_s: float) -> list[dict]:
    """The soak's three checks, each with its numbers and a pass flag.

    ``samples`` carry ``t_s``: seconds since the window opened. RSS growth compares the last
    sample with the first one taken after the first slice ended.
    """
    checks = []
    failed = record["requests"]["failed"]
    checks.append(
        {
            "name": "errors",
            "limit": "0",
            "value": f"{failed} ({record['requests']['failures']})" if failed else "0",
            "passed": failed == 0 and record["complete"],
        }
    )
    for who in ("client", "server"):
        series = [(s["t_s"], s[f"{who}_rss"]) for s in samples if s.get(f"{who}_rss")]
        after = [v for t, v in series if t >= slice_s]
        if len(after) < 2:
            checks.append(
                {
                    "name": f"{who} RSS growth",
                    "limit": f"< {RSS_GROWTH_LIMIT:.0%}",
                    "value": "not enough samples after the first slice",
                    "passed": False,
                }
            )
            continue
        growth = (after[-1] - after[0]) / after[0]
        checks.append(
            {
                "name": f"{who} RSS growth",
                "limit": f"< {RSS_GROWTH_LIMIT:.0%}",
                "value": f"{growth:+.1%} ({after[0] / MIB:,.0f} -> {after[-1] / MIB:,.0f} MiB)",
                "passed": growth < RSS_GROWTH_LIMIT,
                "growth": growth,
            }
        )
    timeline = record.get("timeline") or []
    if len(timeline) >= 2 and timeline[0]["throughput_rps"] > 0:
        first, last = timeline[0]["throughput_rps"], timeline[-1]["throughput_rps"]
        drift = (last - first) / first
        checks.append(
            {
                "name": "throughput, last slice vs first",
                "limit": f"within {THROUGHPUT_DRIFT_LIMIT:.0%}",
                "value": f"{drift:+.1%} ({first:,.0f} -> {last:,.0f} req/s)",
                "passed": abs(drift) <= THROUGHPUT_DRIFT_LIMIT,
                "drift": drift,
            }
        )
    else:
        checks.append(
            {
                "name": "throughput, last slice vs first",
                "limit": f"within {THROUGHPUT_DRIFT_LIMIT:.0%}",
                "value": "fewer than 2 slices",
                "passed": False,
            }
        )
    return checks


def markdown(summary: dict) -> str:
    """The soak's table: one row per slice, the RSS samples, and the criteria."""
    s = summary
    lines = [
        f"# Soak: {s['model']}, batching {s['batching']}, c={s['concurrency']}, {s['minutes']:g} min ({s['engine']} engine)",
        "",
        f"{s['date']}, {s['machine']}, commit {s['commit'] or '?'}. Command: `{s['command']}`.",
        f"Verdict: **{'PASS' if s['passed'] else 'FAIL'}**. Whole window: {s['throughput_rps']:,.0f} req/s, p99 {s['p99_ms']:.2f} ms, {s['failed']} errors.",
        "",
        "| check | limit | measured | ok |",
        "|---|---|---|---|",
        *(f"| {c['name']} | {c['limit']} | {c['value']} | {'yes' if c['passed'] else '**no**'} |" for c in s["criteria"]),
        "",
        f"Per slice of {s['slice_s']:g} s (by send time):",
        "",
        "| from (s) | req/s | p50 ms | p99 ms | max ms | errors |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {t['start_s']:g} | {t['throughput_rps']:,.0f} | {_ms(t['p50_ms'])} | {_ms(t['p99_ms'])} | {_ms(t['max_ms'])} | {t['failed']} |"
            for t in s["timeline"]
        ),
        "",
        f"RSS every {s['sample_s']:g} s (client: the measuring process and its children; server: tritonserver and its python-backend stubs):",
        "",
        "| t (s) | client MiB | server MiB |",
        "|---:|---:|---:|",
        *(f"| {x['t_s']:.0f} | {_mib(x['client_rss'])} | {_mib(x['server_rss'])} |" for x in s["samples"]),
        "",
        f"Plot: [{s['plot']}]({s['plot']}).",
    ]
    return "\n".join(lines) + "\n"


def _mib(value: int | None) -> str:
    return "-" if not value else f"{value / MIB:,.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_p99, ax_rss) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    mids = [t["start_s"] + t["duration_s"] / 2 for t in summary["timeline"]]
    ax_rps.plot(mids, [t["throughput_rps"] for t in summary["timeline"]], marker="o")
    ax_rps.set_ylabel("throughput (req/s)")
    ax_rps.set_ylim(bottom=0)
    ax_p99.plot(mids, [t["p99_ms"] for t in summary["timeline"]], marker="o", color="tab:red")
    ax_p99.set_ylabel("p99 latency (ms)")
    ax_p99.set_ylim(bottom=0)
    times = [x["t_s"] for x in summary["samples"]]
    ax_rss.plot(times, [x["client_rss"] / MIB for x in summary["samples"]], marker=".", label="client")
    if any(x["server_rss"] for x in summary["samples"]):
        ax_rss.plot(
            times,
            [(x["server_rss"] or math.nan) / MIB for x in summary["samples"]],
            marker=".",
            label="server (tritonserver + stubs)",
        )
    ax_rss.axvline(summary["slice_s"], color="grey", linestyle=":", label="end of the first slice")
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.set_xlabel("seconds since the window opened")
    ax_rss.set_ylim(bottom=0)
    ax_rss.legend(loc="lower right")
    fig.suptitle(
        f"soak: {summary['model']}, batching {summary['batching']}, c={summary['concurrency']}, {summary['minutes']:g} min"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
