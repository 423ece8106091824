"""What every figure of the report shares: one colour per batching mode, the budget lines' styles, log-axis labels, titles that fit.

Imported by every module that draws, so the Agg backend is chosen before any figure is made.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display on our machines; PNGs only

# One colour meaning across the study's figures: blue is batching ON, orange batching OFF, and
# nothing else in these figures is blue or orange (server components are greens and greys,
# budgets red, client-bound black), so a colour never has to be looked up twice.
COLORS = {"on": "tab:blue", "off": "tab:orange", None: "tab:gray"}  # None: an external server's unstated mode
BUDGET_STYLE = {"p50": ":", "p99": "--"}  # both red: dotted p50, dashed p99, on every latency axis
MODEL_STYLE = {"v1": ("o", "-", "x"), "v2": ("s", "--", "+")}  # marker, line, fell-behind marker
COMPONENT_COLORS = ("#2f4f4f", "#8fbc8f", "#556b2f", "#c0c0c0")  # queue, input, infer, output
TITLE_ROOM = 0.96  # the share of a figure's width a title may take


# Minor labels (2 and 5 between decades) only on an axis of at most this many decades: beyond
# it they would crowd the decades' own labels.
MINOR_LABELS_MAX_DECADES = 3.5


def label_decades(axis) -> None:
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
    axis.set_tick_params(
        which="minor", labelsize=matplotlib.rcParams[f"{axis.axis_name}tick.labelsize"]
    )  # one size with the decades'


def fit_suptitle(fig, title: str) -> None:
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
