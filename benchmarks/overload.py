"""What overload does to a SONIC server: open loop at 1x, 2x and 4x its measured capacity, with and without a queue bound.

A benchmark, not a test: it prints a table (requests answered per second of window, those
answered within the p99 budget, p99 of the answered requests, rejections, peak server memory)
and writes the records as JSON. Three embedded servers serve the same model with batching on:

- the seed's config: no queue bound, so overload queues, i.e. grows the server's memory;
- a size bound: the dynamic batcher rejects a request that finds ``--max-queue-size``
  requests queued (Triton: "Exceeds maximum queue size");
- a time bound: it rejects a request that waited ``--queue-timeout-us`` in the queue
  (Triton: "Request timeout expired").

Capacity is the closed-loop throughput of the unbounded server at ``--concurrency``; each
open-loop run is Poisson at a multiple of it, the three servers interleaved. The memory guard
stays on (axon's default limit) for every run: the benchmark itself never takes the machine
down.

Then a probe of the size bound alone, closed loop at half the bound and at twice it: what
the server executes per second once rejections begin (measured on Triton 2.51: almost
nothing; its dynamic batcher then waits on its 0.5 s idle timer, see docs/overload.md).

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
from axon.records import results, stats
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
    parser.add_argument("--max-queue-size", type=int, default=16, help="the size-bounded server's queue bound (default 16)")
    parser.add_argument(
        "--queue-timeout-us",
        type=int,
        default=20_000,
        help="the time-bounded server's queue timeout in µs (default 20,000: under the 25 ms p99 budget)",
    )
    parser.add_argument(
        "--budget-p99-ms",
        type=float,
        default=25.0,
        help="goodput counts the answers within this latency (default 25, the SLO's p99)",
    )
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
        size_repo = with_queue_policy(seed_repo, folder / "size", args.max_queue_size, 0)
        time_repo = with_queue_policy(seed_repo, folder / "time", 0, args.queue_timeout_us)
        servers = {
            "none (seed)": stack.enter_context(EmbeddedServer(seed_repo, models=[model])),
            f"size {args.max_queue_size}, reject": stack.enter_context(EmbeddedServer(size_repo, models=[model])),
            f"time {args.queue_timeout_us / 1000:g} ms, reject": stack.enter_context(EmbeddedServer(time_repo, models=[model])),
        }
        unbounded, size_bounded = list(servers.values())[:2]
        capacity_run = run_case(LoadSpec(model, concurrency=args.concurrency, **common), Target.of(unbounded, "on"), features)
        capacity = capacity_run["throughput_rps"]
        print(
            f"capacity: {capacity:,.0f} req/s ({model}, {args.rows_per_request} rows/request, closed loop c={args.concurrency}, batching on, no queue bound)",
            file=sys.stderr,
        )
        for multiple in MULTIPLES:
            for bound, server in servers.items():  # interleaved: drift hits all alike
                spec = LoadSpec(model, rate=capacity * multiple, distribution="poisson", **common)
                r = run_case(spec, Target.of(server, "on"), features)
                r["overload"] = {"multiple": multiple, "capacity_rps": capacity, "queue_bound": bound}
                records.append(r)
                print(
                    f"  {multiple}x, queue bound {bound}: {r['throughput_rps']:,.0f} req/s answered, {r['requests']['rejected']:,} rejected",
                    file=sys.stderr,
                )
        probes = []
        for concurrency in (max(1, args.max_queue_size // 2), 2 * args.max_queue_size):
            for bound, server in (("none (seed)", unbounded), (f"size {args.max_queue_size}", size_bounded)):
                r = run_case(LoadSpec(model, concurrency=concurrency, **common), Target.of(server, "on"), features)
                r["overload"] = {"probe": "size bound", "queue_bound": bound}
                probes.append(r)
    results.write_results(args.output, [capacity_run, *records, *probes])
    print(table(records, capacity, args))
    print()
    print(probe_table(probes, args))
    print(f"records: {args.output}")
    return 0


def within(record: dict, limit_ms: float) -> int:
    """The answered requests whose latency is within ``limit_ms``."""
    histogram = stats.decode(record["histogram"])
    return sum(
        item.count_at_value_iterated_to for item in histogram.get_recorded_iterator() if item.value_iterated_to <= limit_ms * 1e3
    )


def probe_table(probes: list[dict], args) -> str:
    lines = [
        "the size bound alone against no bound, closed loop at half the bound (the queue never overflows) and at twice it:",
        "",
        "| concurrency | queue bound | answered/s | rejected | p50 ms | p99 ms | executions/s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in probes:
        sm = r.get("server_metrics") or {}
        executions = sm.get("execution_count")
        per_s = f"{executions / r['measured_s']:,.0f}" if executions is not None else "-"
        lat = r["latency_ms"]
        lines.append(
            f"| {r['load']['concurrency']} | {r['overload']['queue_bound']} | {r['throughput_rps']:,.0f} | {r['requests']['rejected']:,} | {lat['p50']:.1f} | {lat['p99']:.1f} | {per_s} |"
        )
    return "\n".join(lines)


def table(records: list[dict], capacity: float, args) -> str:
    machine = records[0]["machine"] if records else {}
    lines = [
        f"{dt.date.today()}, {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores), embedded Triton {records[0]['server']['version'] if records else '?'}; "
        f"{served_name(args.model)}, {args.rows_per_request} rows/request, batching on; capacity {capacity:,.0f} req/s (closed loop c={args.concurrency}); "
        f"open loop Poisson, {args.warmup:g} s warm-up + {args.duration:g} s window, python engine",
        "",
        f"| offered | queue bound | sent/s | answered/s (of those sent in the window) | within {args.budget_p99_ms:g} ms/s | p99 ms (answered) | rejected | timed out | not sent (client's in-flight bound) | other failures | peak server memory | growth |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        o, req, mem = r["overload"], r["requests"], r.get("server_memory") or {}
        not_sent = r["schedule"].get("not_sent") or 0
        other = req["failed"] - req["rejected"] - req["timed_out"] - not_sent
        behind = " (sender behind)" if (r.get("schedule") or {}).get("behind") else ""
        lines.append(
            f"| {o['multiple']}x = {r['load']['rate']:,.0f}/s | {o['queue_bound']} | {r['schedule']['sent_rps']:,.0f}{behind} | {r['throughput_rps']:,.0f} | {within(r, args.budget_p99_ms) / r['measured_s']:,.0f} | "
            f"{r['latency_ms']['p99']:.1f} | {req['rejected']:,} | {req['timed_out']:,} | {not_sent:,} | {other:,} | {gib(mem.get('peak_bytes'))} | {gib(mem.get('growth_bytes'))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
