"""``axon tune``: the options; the run itself is :mod:`axon.study.tune.run`, imported only when it runs.

Parsing stays light (no matplotlib, scipy or onnxruntime), so a mistyped option is said at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from axon.cli.args import MAX_SERVER_MEMORY_HELP, concurrency_list, memory_size, positive_float, positive_int
from axon.cli.model_args import add_model_options
from axon.study.tune import ALPHA, CONFIRM_PAIRS

DEFAULT_CONCURRENCY = "16,64,128"
OBJECTIVES = ("throughput", "capacity")


def command(args: argparse.Namespace) -> int:
    from axon.study.tune import run

    return run.command(args)


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="find the Triton config (instances, queue delay, preferred/max batch) that serves the most within the latency budget",
    )
    add_model_options(p)
    p.add_argument(
        "--batching",
        choices=("on", "off"),
        default="on",
        help="the served repository's batching mode (off: only --instances applies)",
    )
    p.add_argument("--instances", help="instance counts, e.g. 1,2,3")
    p.add_argument("--delay-us", help="max queue delays in µs, e.g. 0,100,500,1000")
    p.add_argument("--preferred", help="preferred batch sizes, e.g. none,64/128/256")
    p.add_argument("--max-batch", help="max batch sizes, e.g. 64,256")
    p.add_argument(
        "--max-queue",
        help="the dynamic batcher's queue bounds, e.g. 0,256 (0: none; a full queue rejects; Triton 2.51's batcher stalls with either bound, docs/overload.md)",
    )
    p.add_argument(
        "--queue-timeout-us", help="the queue's timeouts in µs, e.g. 0,20000 (0: none; a request queued longer is rejected)"
    )
    p.add_argument(
        "--space",
        type=Path,
        help="TOML file with a list per knob (instances, delay_us, preferred, max_batch, max_queue, queue_timeout_us); flags take precedence",
    )
    p.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=concurrency_list(DEFAULT_CONCURRENCY),
        help=f"closed-loop sweep per candidate, stopped early at < 5%% gain (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument("--p50-ms", type=float, default=7.0, help="p50 budget in ms (default 7)")
    p.add_argument("--p99-ms", type=float, default=25.0, help="p99 budget in ms (default 25)")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="throughput",
        help="rank by closed-loop throughput within budget, or also search open-loop capacity under the p99 budget",
    )
    p.add_argument(
        "--alpha",
        type=_level,
        default=ALPHA,
        help=f"the chance, at most, of crowning a candidate no better than the default (default {ALPHA:g})",
    )
    p.add_argument(
        "--confirm-pairs",
        type=positive_int,
        default=CONFIRM_PAIRS,
        help=f"interleaved pairs (default, nominee) of the head-to-head that must confirm a winner (default {CONFIRM_PAIRS}; at least 2)",
    )
    p.add_argument(
        "--repeat", type=positive_int, default=3, help="interleaved rounds: every candidate once per round (default 3)"
    )
    p.add_argument("--duration", type=positive_float, default=2.0, help="measurement window per run in seconds (default 2)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up per run in seconds (default 1)")
    p.add_argument(
        "--url", help="an existing Triton (HOST:PORT, gRPC) in explicit model-control mode; default: start the embedded server"
    )
    p.add_argument("--metrics-url", help="with --url: Triton's metrics URL (the native engine checks its counts against it)")
    p.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts"),
        help="output of `axon train`: rows, models, repositories (default artifacts)",
    )
    p.add_argument(
        "--gpu-repository",
        type=Path,
        default=Path("model_repository"),
        help="--apply also writes the winner here (gpu target; default model_repository)",
    )
    p.add_argument(
        "--apply",
        action="store_true",
        help="write the winner's config.pbtxt into the artifacts' repositories and --gpu-repository",
    )
    p.add_argument("--max-server-memory", type=memory_size, help=MAX_SERVER_MEMORY_HELP)
    p.add_argument("--out", type=Path, default=Path("results/tune"), help="results go to OUT/<model>/ (default results/tune)")
    p.set_defaults(func=command)
