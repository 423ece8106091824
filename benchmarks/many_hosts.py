"""Many hosts against one: a 2-host Dask run and today's ``--processes 2`` on the same server.

Both offer the same load from two python-engine worker processes: one machine's WorkerPool,
or two Dask workers (a LocalCluster on this machine, each running one load process). They
run interleaved (dask, processes, dask, processes, ...) against one embedded Triton, and the
script prints each side's median [min–max] throughput and p50/p99, and whether the ranges
overlap ("within noise"). On one machine this checks that the placement adds no bias; it
cannot show scale, since both "hosts" share this machine's cores with the server.

    python benchmarks/many_hosts.py [--artifacts artifacts] [--duration 3] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axon.case import Target, run_case
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import load_rows
from axon.records import repeats, results
from axon.records.atomic import write_json
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer

MODEL = "particle_classifier_v1"
SIDES = ("dask-2-hosts", "processes-2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--output", type=Path, default=Path("results/many_hosts.json"))
    args = parser.parse_args()
    repo = embedded_repository(args.artifacts, "on")
    if not repo.is_dir():
        print(f"many_hosts: no repository at {repo}; run `axon train` (or `make bench`) first", file=sys.stderr)
        return 2
    import dask
    from distributed import LocalCluster

    from axon.engines.hosts.dask import DaskHosts

    features, dataset = load_rows(args.artifacts)
    reference = args.artifacts / "models" / MODEL / "model.onnx"
    spec = LoadSpec(MODEL, concurrency=args.concurrency, duration_s=args.duration, warmup_s=args.warmup, engine="python")
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    with (
        dask.config.set({"distributed.worker.daemon": False, "distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster,
        DaskHosts(cluster.scheduler_address, 2) as hosts,
        EmbeddedServer(repo, models=[MODEL]) as server,
    ):
        target = Target(server.endpoints, "embedded", server.version, "on")
        for i in range(args.rounds):
            for side in SIDES:
                if side == "processes-2":
                    r = run_case(LoadSpec(**{**spec.__dict__, "processes": 2}), target, features, reference, dataset)
                else:
                    r = run_case(LoadSpec(**{**spec.__dict__, "processes": 1}), target, features, reference, dataset, hosts=hosts)
                r["many_hosts_side"] = side
                runs[side].append(r)
                state = "ok" if r["passed"] else f"FAILED {r['verdicts']} {r['incomplete_reason']}"
                print(f"round {i + 1} {side:>13}: {r['throughput_rps']:,.0f} req/s, p50 {r['latency_ms']['p50']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms, "
                      f"cpu {max(r['client']['cores_per_process']):.2f}  {state}", flush=True)  # fmt: skip
    summary = {side: repeats.summarise(rs) for side, rs in runs.items()}
    print(f"\nc={args.concurrency}, {args.duration:g} s windows, {args.rounds} interleaved rounds: median [min–max]")
    for side, s in summary.items():
        print(
            f"  {side:>13}: {s['throughput_rps'].format()} req/s, p50 {s['p50_ms'].format('.2f')} ms, p99 {s['p99_ms'].format('.2f')} ms"
        )
    a, b = (runs[side] for side in SIDES)
    print(f"  throughput dask / processes: {repeats.ratio(a, b).format()}; p50: {repeats.ratio(a, b, 'p50_ms').format()}")
    write_json(args.output, {"machine": results.machine_info(), "runs": [r for rs in runs.values() for r in rs]})
    print(f"records: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
