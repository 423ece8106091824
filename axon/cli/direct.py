"""`axon direct`: the model in-process with onnxruntime, the other side of SONIC's scale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axon.cli.args import int_list, positive_float
from axon.cli.model_args import add_model_options
from axon.errors import AxonError
from axon.names import DEFAULT_MODEL, MODEL_PREFIX, VERSIONS, served_name
from axon.progress import CaseProgress
from axon.records import repeats, results


def table(runs: list[dict]) -> str:
    head = f"{'model':<24} {'rows/call':>9} {'threads':>7} {'calls/s':>18} {'rows/s':>22} {'p50 µs':>8} {'p99 µs':>8} {'CPU µs/call':>11} {'CPU µs/row':>10}"
    lines = [head, "-" * len(head)]
    for key, group in repeats.group(
        runs, key=lambda r: f"{r['model']}|{r['load']['rows_per_request']}|{r['load']['threads']}"
    ).items():
        model, rows, threads = key.split("|")
        calls = repeats.Spread.of(r["throughput_rps"] for r in group)
        rows_s = repeats.Spread.of(r["throughput_inferences_per_s"] for r in group)
        p50 = repeats.Spread.of(r["latency_ms"]["p50"] * 1e3 for r in group).median
        p99 = repeats.Spread.of(r["latency_ms"]["p99"] * 1e3 for r in group).median
        cpu = repeats.Spread.of(r["client"]["cpu_us_per_request"] for r in group).median
        lines.append(
            f"{model:<24} {rows:>9} {threads:>7} {calls.format():>18} {rows_s.format():>22} {p50:>8.1f} {p99:>8.1f} {cpu:>11.2f} {cpu / int(rows):>10.3f}"
        )
    return (
        "\n".join(lines)
        + "\n(calls/s and rows/s: median [min–max] over repeats; CPU: this process's user+system time per call and per row)"
    )


def command(args: argparse.Namespace) -> int:
    from axon.case import run_direct
    from axon.engines.model_choice import resolve

    if args.onnx is None:
        model = served_name(args.model or DEFAULT_MODEL)
        onnx_path = args.artifacts / "models" / model / "model.onnx"
        if not onnx_path.is_file():
            known = sorted(p.name for p in (args.artifacts / "models").glob("*") if (p / "model.onnx").is_file())
            hint = f"; trained models there: {', '.join(known)}" if known else "; run `axon train` first, or give --onnx PATH"
            if model.removeprefix(MODEL_PREFIX) in VERSIONS:
                hint += f" (for {model}: axon train --models {model.removeprefix(MODEL_PREFIX)} --out {args.artifacts})"
            raise AxonError(f"no ONNX model for {model!r} at {onnx_path}{hint}")
    # A damaged artifact, a bad --onnx, --shape or --input-data is said before any folder is made.
    choice = resolve(args, args.artifacts if args.artifacts.is_dir() else None, max(args.rows_per_request), serve=False)
    model, onnx_path, features, dataset = choice.name, choice.reference or onnx_path, choice.feed, choice.dataset
    for notice in choice.notices:
        print(f"axon: notice: {notice}", file=sys.stderr)
    writer = results.ResultsWriter(args.output or results.default_output(Path("results"), "direct"))  # checked before any work
    runs: list[dict] = []
    for rows in args.rows_per_request:
        for threads in args.threads:
            for index in range(args.repeat):
                label = f"{model}, direct, {rows} rows/call, {threads} thread(s)" + (
                    f", repeat {index + 1}/{args.repeat}" if args.repeat > 1 else ""
                )
                progress = CaseProgress(label, args.duration)
                try:
                    run = run_direct(
                        model,
                        onnx_path,
                        features,
                        rows,
                        threads,
                        args.duration,
                        args.warmup,
                        dataset,
                        progress,
                        (index, args.repeat) if args.repeat > 1 else None,
                    )
                finally:
                    progress.close()
                runs.append(run)
                writer.save(runs)
                if run["incomplete_reason"] == "interrupted":
                    raise KeyboardInterrupt
    print(table(runs))
    print(f"results: {writer.path}")
    writer.finish()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "direct",
        help="run the model in-process with onnxruntime (no server): the direct side of direct vs service",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_options(p)
    p.add_argument(
        "--rows-per-request", type=int_list(1), default=[1, 16, 256], metavar="K[,K...]", help="rows per call (event sizes)"
    )
    p.add_argument(
        "--threads",
        type=int_list(1),
        default=[1],
        metavar="T[,T...]",
        help="onnxruntime intra-op threads (1: as inside an HLT process)",
    )
    p.add_argument("--duration", type=positive_float, default=2.0, help="measurement window per case, seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up per case, seconds")
    p.add_argument("--repeat", type=int, default=3, help="runs per case; tables show median [min-max]")
    p.add_argument("--seed", type=int, default=0, help="seed for generated rows when there are no artifacts")
    p.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts"),
        help="output of `axon train` (models/<name>/model.onnx and validation rows)",
    )
    p.add_argument("--output", type=Path, help="results JSON (default results/direct-<time>.json)")
    p.set_defaults(func=_checked(command))


def _checked(func):
    def run(args: argparse.Namespace) -> int:
        if args.repeat < 1:
            raise AxonError(f"--repeat must be >= 1, got {args.repeat}")
        if args.warmup < 0:
            raise AxonError(f"--warmup must be >= 0, got {args.warmup}")
        return func(args)

    return run
