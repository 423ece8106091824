"""``axon compare``: the two-sample gate (OLD NEW) and the history gate (--storage DIR).

Turns arguments into verdicts, lines of output and an exit code.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from axon.errors import AxonError

EXIT_OK = 0
EXIT_REGRESSION = 1


def fraction(text: str | float | None, name: str, default: float) -> float:
    """A number strictly between 0 and 1 (``--threshold``, ``--alpha``), or a one-line error."""
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise AxonError(f"--{name} must be a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise AxonError(f"--{name} must be between 0 and 1 (exclusive), got {text}")
    return value


def _emit(payload: dict, lines: list[str], as_json: bool) -> None:
    print(json.dumps(payload, indent=2) if as_json else "\n".join(lines))


def two_sample(
    old_paths: list[Path],
    new_paths: list[Path],
    metric: str,
    threshold: float,
    alpha: float,
    strict: bool = False,
    as_json: bool = False,
    single_run_fails: bool = False,
) -> int:
    """Compare OLD and NEW (each a results file or a folder of them) on run-level values."""
    from axon.verdicts import context, gate, runs  # scipy: only once options parse

    old, new = runs.load_many(old_paths), runs.load_many(new_paths)
    both = sorted(set(old) & set(new))
    if not both:
        raise AxonError(f"no case appears in both {', '.join(map(str, old_paths))} and {', '.join(map(str, new_paths))}")
    diffs = [
        line for case in both for line in context.differences(case, [r.record for r in old[case]], [r.record for r in new[case]])
    ]
    warnings = context.enforce(diffs, strict)
    verdicts = gate.compare(old, new, metric, threshold, alpha, single_run_fails)
    regressions = [v for v in verdicts if v.regression]
    only = sorted(set(old) ^ set(new))
    methods = sorted({v.method for v in verdicts})
    lines = [
        f"old: {', '.join(map(str, old_paths))}",
        f"new: {', '.join(map(str, new_paths))}",
        f"method: {'; '.join(methods)}; alpha {alpha:g}, threshold {threshold:.0%} on {metric}. "
        "A regression is significant across runs AND beyond the threshold; requests within a run are not evidence.",
        *warnings,
        gate.table(verdicts),
    ]
    if any(v.p_value is None for v in verdicts):
        lines.append(
            f"note: {gate.SINGLE_RUN_NOTE}" + (" (--single-run-fails: over threshold fails)" if single_run_fails else "")
        )
    if only:
        lines.append(f"({len(only)} case(s) on only one side, not compared)")
    power = gate.power_line(verdicts, alpha)
    lines.append(power)
    if regressions:
        lines.append(
            f"{len(regressions)} regression(s): {metric} worse by > {threshold:.0%}"
            + ("" if single_run_fails else f" and significant across runs (p < {alpha:g})")
        )
    elif all(v.p_value is None for v in verdicts) and not single_run_fails:
        # Nothing was judged: "no regression" would read as a pass the gate never gave.
        lines.append(f"not judged: 1 run a side, no significance ({metric}, threshold {threshold:.0%} shown only)")
    else:
        lines.append(f"no regression ({metric}, threshold {threshold:.0%}, alpha {alpha:g})")
    payload = {
        "mode": "compare",
        "metric": metric,
        "threshold": threshold,
        "alpha": alpha,
        "warnings": warnings,
        "power": power,
        "verdicts": [v.as_dict() for v in verdicts],
        "only_one_side": only,
        "regressions": len(regressions),
    }
    _emit(payload, lines, as_json)
    return EXIT_REGRESSION if regressions else EXIT_OK


def history_gate(
    storage: Path,
    metric: str,
    threshold: float,
    alpha: float,
    strict: bool = False,
    as_json: bool = False,
    plot_dir: Path | None = None,
) -> int:
    """Judge the newest run of every case in a storage folder against its history."""
    from axon.verdicts import context, history, runs  # scipy: only once options parse

    if not Path(storage).is_dir():
        raise AxonError(f"{storage}: no such folder")
    cases = runs.load_many([storage])
    sources = {r.source for rs in cases.values() for r in rs}
    if len(sources) < 2 and sum(len(rs) for rs in cases.values()) < 2:
        raise AxonError(
            f"{storage}: need at least two saved runs to judge a history, found {sum(len(rs) for rs in cases.values())}"
        )
    changes = [
        line
        for case, rs in sorted(cases.items())
        for line in context.changes_over(case, [(Path(r.source).name, r.record) for r in rs])
    ]
    warnings = context.enforce(changes, strict)
    verdicts = [history.judge_history(case, rs, metric, threshold, alpha) for case, rs in sorted(cases.items())]
    regressions = [v for v in verdicts if v.regression]
    lines = [
        f"storage: {storage} ({len(sources)} file(s), {len(cases)} case(s))",
        f"method: E-divisive means over each case's saved runs (one point each: the median of its repeats), permutation test (alpha {alpha:g}); the newest run fails when "
        f"its segment's median {metric} is worse than the previous segment's by > {threshold:.0%}.",
        *warnings,
        history.table(verdicts),
    ]
    plots: list[str] = []
    if plot_dir is not None:
        from axon.verdicts import plot

        plots = [str(p) for p in plot.write_plots(verdicts, threshold, plot_dir)]
        lines.append(f"plots: {plot_dir} ({len(plots)} file(s))")
    judged = [v for v in verdicts if v.judged]
    unjudged = len(verdicts) - len(judged)
    skipped = f"; {unjudged} case(s) not judged (history shorter than {history.MIN_HISTORY} runs)" if unjudged else ""
    power = history.power_line(verdicts, alpha)
    if power:
        lines.append(power)
    blind = bool(judged) and all(v.detectable is not None and math.isinf(v.detectable) for v in judged)
    if regressions:
        lines.append(
            f"{len(regressions)} regression(s) in the newest run: {metric} in a new segment worse by > {threshold:.0%}{skipped}"
        )
    elif not judged:
        # Nothing was judged: "no regression" would read as a pass the gate never gave.
        lines.append(f"not judged: every case's history is shorter than {history.MIN_HISTORY} runs; no verdict on the newest run")
    elif blind:
        lines.append(
            f"not judged: no history here is long enough to tell a step in its newest runs from noise at alpha {alpha:g}; no verdict on the newest run"
        )
    else:
        lines.append(
            f"no regression in the newest run of {len(judged)} case(s) judged ({metric}, threshold {threshold:.0%}, alpha {alpha:g}){skipped}"
        )
    payload = {
        "mode": "history",
        "judged": len(judged),
        "power": power,
        "metric": metric,
        "threshold": threshold,
        "alpha": alpha,
        "warnings": warnings,
        "verdicts": [v.as_dict() for v in verdicts],
        "plots": plots,
        "regressions": len(regressions),
    }
    _emit(payload, lines, as_json)
    return EXIT_REGRESSION if regressions else EXIT_OK


def _contents(path: Path) -> list[bytes]:
    """The bytes of a results file, or of every JSON file under a folder (sorted): what the gate would read."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    try:
        return sorted(f.read_bytes() for f in files)
    except OSError:
        return [str(path.resolve()).encode()]  # unreadable: the reader says why, later


def same_measurements(old: Path, new: Path) -> None:
    """OLD and NEW that are one file (or hold the same bytes) can only agree: "no regression"
    would read as a verdict the gate never reached, so it is a one-line error instead."""
    if not (old.exists() and new.exists()):
        return  # the reader names the missing one
    if old.resolve() == new.resolve():
        raise AxonError(
            f"OLD and NEW are the same {'folder' if old.is_dir() else 'file'} ({old}): comparing runs with themselves finds nothing; give the baseline and the new runs"
        )
    held = _contents(old)
    if held and held == _contents(new):
        raise AxonError(
            f"OLD {old} and NEW {new} hold identical content (the same runs): comparing runs with themselves finds nothing"
        )


def command(args: argparse.Namespace) -> int:
    from axon.verdicts import gate, history  # scipy: only once options parse

    threshold = fraction(args.threshold, "threshold", gate.DEFAULT_THRESHOLD)
    if args.storage:
        if args.files:
            raise AxonError("give either OLD NEW or --storage, not both")
        alpha = fraction(args.alpha, "alpha", history.DEFAULT_ALPHA)
        return history_gate(args.storage, args.metric, threshold, alpha, args.strict, args.json, args.plot_dir)
    if len(args.files) != 2:
        raise AxonError("give two result files or folders (OLD NEW), or --storage DIR")
    if args.plot_dir:
        raise AxonError("--plot-dir draws histories: use it with --storage")
    alpha = fraction(args.alpha, "alpha", gate.DEFAULT_ALPHA)
    same_measurements(args.files[0], args.files[1])
    return two_sample(
        [args.files[0]], [args.files[1]], args.metric, threshold, alpha, args.strict, args.json, args.single_run_fails
    )


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="regression gate: OLD vs NEW on run-level values, or the newest run vs its history (--storage); exit 1 on a real regression",
    )
    p.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="OLD NEW",
        help="two results files or folders of them (pytest-benchmark or axon JSON)",
    )
    p.add_argument(
        "--storage", type=Path, help="judge the newest run of each case against every run saved here (e.g. .benchmarks)"
    )
    p.add_argument(
        "--metric",
        choices=("p50_ms", "p99_ms", "mean_ms", "throughput_rps"),
        default="p50_ms",
        help="run-level value to judge (default p50_ms)",
    )
    p.add_argument("--threshold", help="relative change that matters, between 0 and 1 (default 0.10)")
    p.add_argument("--alpha", help="significance level across runs (default 0.01 for OLD NEW, 0.05 for --storage change points)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a different machine, engine, dataset, server or axon version is an error, not a warning",
    )
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p.add_argument("--plot-dir", type=Path, help="with --storage: one PNG per case's history here")
    p.add_argument("--single-run-fails", action="store_true", help="with 1 run per side, fail on the threshold alone")
    p.set_defaults(func=command)
