"""``axon report``: tables and plots from a study's folder, any axon results file, or a pytest-benchmark JSON of axon's cases."""

from __future__ import annotations

import argparse
from pathlib import Path

from axon.cli.args import HelpFormatter


def command(args: argparse.Namespace) -> int:
    from axon.study import report

    path = report.write_report(args.path, args.out)
    print(path.read_text())
    print(f"report: {path} (plots beside it)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="tables and plots from a study's folder, any axon results file (bench, sweep, A/B, merged) or a pytest-benchmark JSON of axon's cases",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "path",
        type=Path,
        nargs="?",
        default=Path("results"),
        help="the folder `axon study --out` wrote, a results JSON file, or pytest-benchmark's JSON (--benchmark-json)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="where report.md and the plots go (default: the study folder, or <file name>-report/ beside a file)",
    )
    p.set_defaults(func=command)
