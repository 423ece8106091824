"""What overload does to a SONIC server: open loop at 1x, 2x and 4x its measured capacity, with and without a queue bound.

A benchmark, not a test: it prints a table (requests answered per second of window, p99 of the answered requests, rejections,
peak server memory) and writes the records as JSON. Two embedded servers serve the same model
with batching on: the seed's config (no queue bound: overload queues, i.e. grows the server's
memory) and a copy whose dynamic batcher rejects a request that finds ``--max-queue-size``
requests queued (Triton: "Exceeds maximum queue size"). Capacity is the closed-loop throughput
of the unbounded server at ``--concurrency``; each open-loop run is Poisson at a multiple of it.
The memory guard stays on (axon's default limit) for every run: the benchmark itself never
takes the machine down.

The python engine sends the open loop; where it falls behind its schedule (a 2-core machine
cannot offer much more than a few thousand requests per second from Python), the "sent/s"
column shows what was really offered and the row is flagged. ``--rows-per-request`` makes each
request costlier for the server, so that its capacity stays within what the sender can offer.

    python benchmarks/overload.py [--artifacts artifacts] [--model v2] [--rows-per-request 256] [--duration 4]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import tempfile
from pathlib import Path

from axon.case import Target, run_case
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import load_rows
from axon.names import served_name
from axon.offline.repository import with_queue_policy
from axon.records import results
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from axon.serving.watch import gib

MULTIPLES = (1, 2, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--model", default="v2")
    parser.add_argument("--rows-per-request", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=16, help="closed loop for the capacity measurement (default 16)")
    parser.add_argument("--max-queue-size", type=int, default=16, help="the bounded server's queue bound (default 16)")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="client deadline per request (s)")
    parser.add_argument("--output", type=Path, default=Path("results") / "overload.json")
    args = parser.parse_args()
    model = served_name(args.model)
    features, _ = load_rows(args.artifacts)
    results.check_writable(args.output)
    seed_repo = embedded_repository(args.artifacts, "on")
    records: list[dict] = []
    common = {"rows_per_request": args.rows_per_request, "duration_s": args.duration, "warmup_s": args.warmup, "timeout_s": args.timeout,
              "engine": "python", "max_error_rate": 1.0}  # fmt: skip
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="axon-overload-")))
        bounded_repo = with_queue_policy(seed_repo, folder / "bounded", args.max_queue_size, 0)
        servers = {
            "none (seed)": stack.enter_context(EmbeddedServer(seed_repo, models=[model])),
            f"{args.max_queue_size}, reject": stack.enter_context(EmbeddedServer(bounded_repo, models=[model])),
        }
        unbounded = next(iter(servers.values()))
        capacity_run = run_case(LoadSpec(model, concurrency=args.concurrency, **common), Target.of(unbounded, "on"), features)
        capacity = capacity_run["throughput_rps"]
        print(f"capacity: {capacity:,.0f} req/s ({model}, {args.rows_per_request} rows/request, closed loop c={args.concurrency}, batching on, no queue bound)", file=sys.stderr)
        for multiple in MULTIPLES:
            for bound, server in servers.items():  # interleaved: drift hits both alike
                spec = LoadSpec(model, rate=capacity * multiple, distribution="poisson", **common)
                r = run_case(spec, Target.of(server, "on"), features)
                r["overload"] = {"multiple": multiple, "capacity_rps": capacity, "queue_bound": bound}
                records.append(r)
                print(f"  {multiple}x, queue bound {bound}: {r['throughput_rps']:,.0f} req/s answered, {r['requests']['rejected']:,} rejected", file=sys.stderr)
    results.write_results(args.output, [capacity_run, *records])
    print(table(records, capacity, args))
    print(f"records: {args.output}")
    return 0


def table(records: list[dict], capacity: float, args) -> str:
    machine = records[0]["machine"] if records else {}
    lines = [
        f"{dt.date.today()}, {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores), embedded Triton {records[0]['server']['version'] if records else '?'}; "
        f"{served_name(args.model)}, {args.rows_per_request} rows/request, batching on; capacity {capacity:,.0f} req/s (closed loop c={args.concurrency}); "
        f"open loop Poisson, {args.warmup:g} s warm-up + {args.duration:g} s window, python engine",
        "",
        "| offered | queue bound | sent/s | answered/s (of those sent in the window) | p99 ms (answered) | rejected | timed out | other failures | peak server memory | growth |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        o, req, mem = r["overload"], r["requests"], r.get("server_memory") or {}
        other = req["failed"] - req["rejected"] - req["timed_out"]
        behind = " (sender behind)" if (r.get("schedule") or {}).get("behind") else ""
        lines.append(
            f"| {o['multiple']}x = {r['load']['rate']:,.0f}/s | {o['queue_bound']} | {r['schedule']['sent_rps']:,.0f}{behind} | {r['throughput_rps']:,.0f} | "
            f"{r['latency_ms']['p99']:.1f} | {req['rejected']:,} | {req['timed_out']:,} | {other:,} | {gib(mem.get('peak_bytes'))} | {gib(mem.get('growth_bytes'))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
