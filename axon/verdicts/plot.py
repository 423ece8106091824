"""One plot per case's history: its runs, the change points, and the band the gate allows.

Each function returns its matplotlib Figure, so tests check axes and labels rather than pixels.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on our machines; PNGs only
import matplotlib.pyplot as plt

from axon.verdicts.history import HistoryVerdict
from axon.verdicts.runs import METRICS

CHANGE_POINT_LABEL = "change point"
BAND_ALPHA = 0.15
DPI = 110


def plot_history(verdict: HistoryVerdict, threshold: float):
    """Runs in time order, change points as vertical lines, previous segment median ± threshold.

    Without a change point the band is around the whole history's median: where the newest
    segment would have to leave before a change could fail the gate.
    """
    fig, ax = plt.subplots(figsize=(8, 4))
    x = list(range(1, len(verdict.values) + 1))
    newest = [i for i, s in enumerate(verdict.sources) if s == verdict.sources[-1]]
    ax.plot(x, verdict.values, "o-", color="tab:blue", label="run")
    ax.plot([x[i] for i in newest], [verdict.values[i] for i in newest], "o", color="tab:red", label="newest run")
    for k, cp in enumerate(verdict.change_points):
        ax.axvline(
            cp.index + 0.5, color="tab:orange", linestyle="--", label=CHANGE_POINT_LABEL if k == 0 else f"_{CHANGE_POINT_LABEL}"
        )
    level = verdict.previous_level if verdict.previous_level is not None else verdict.level
    which = "previous segment" if verdict.previous_level is not None else "history"
    ax.axhspan(
        level * (1 - threshold),
        level * (1 + threshold),
        color="tab:green",
        alpha=BAND_ALPHA,
        label=f"{which} median ± {threshold:.0%}",
    )
    ax.axhline(level, color="tab:green", linewidth=1, label=f"_{which} median")
    ax.set_xlabel("run (oldest to newest)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # runs are counted: no tick at run 1.5
    ax.set_ylabel(METRICS[verdict.metric][0])
    ax.set_title(f"{verdict.case}: {verdict.verdict}", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def file_name(case: str, metric: str) -> str:
    """A safe PNG name for a case and metric."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{case}-{metric}").strip("_") + ".png"


def write_plots(verdicts: list[HistoryVerdict], threshold: float, directory: Path) -> list[Path]:
    """One PNG per verdict under ``directory``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for verdict in verdicts:
        fig = plot_history(verdict, threshold)
        path = directory / file_name(verdict.case, verdict.metric)
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        paths.append(path)
    return paths
