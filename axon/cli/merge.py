"""``axon merge``: runs of the same cases measured side by side on several hosts, merged exactly."""

from __future__ import annotations

import argparse
from pathlib import Path

from axon.cli.args import HelpFormatter


def command(args: argparse.Namespace) -> int:
    from axon.records import merge, results

    runs = merge.merge_files(args.files)
    writer = results.ResultsWriter(args.output)
    writer.save(runs)
    for r in runs:
        lat = r["latency_ms"]
        print(
            f"{merge.case_key(r)}: {r['merged']['from']} runs ({', '.join(r['merged']['hosts'])}) -> "
            f"{r['throughput_rps']:,.0f} req/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, {r['requests']['ok']:,} ok"
        )
    print(f"merged: {writer.path}")
    writer.finish()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "merge",
        help="merge runs of the same cases measured side by side on several hosts (exact, through the histograms)",
        formatter_class=HelpFormatter,
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="results files, one per host, holding the same cases")
    p.add_argument("--output", type=Path, required=True, help="the merged results file")
    p.set_defaults(func=command)
