"""Measure the measurer: raw h2load, axon's native engine and axon's python engine on one server.

h2load (Debian's nghttp2-client) run by hand is the reference: one pre-serialised gRPC
ModelInfer frame, N streams on one connection, its own req/s and its log's median latency.
The model is any axon measures (``--model`` among the trained ones, pn's several inputs
included, or ``--onnx PATH`` with ``--shape``); the frame is built from its signature by
axon's workload, as the first of the bodies the native engine posts, so both send the same bytes.
The native engine drives the same h2load through axon (body check, Triton cross-check,
histogram); the python engine is axon's grpc.aio client. All three hit the same embedded
Triton in one run, interleaved (raw, native, python, raw, native, python, ...), and the script
prints each engine's throughput ratio to raw h2load with its spread over rounds, and its p50
gap. Targets (issue 9, our 2-core machine): native >= 0.95x raw h2load at c=64, p50 within 5%
at c=1 and c=64; issue 27: the same on a multi-input model.

    python benchmarks/fidelity.py [--artifacts artifacts] [--model pn | --onnx PATH --shape NAME:d1,d2] [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from axon.case import Target, run_case
from axon.cli.model_args import add_model_options
from axon.engines.loadgen import LoadSpec
from axon.engines.model_choice import ModelChoice, resolve
from axon.engines.payloads import MODEL_INFER, grpc_frame, resolve_artifacts
from axon.errors import AxonError
from axon.records import results
from axon.records.atomic import write_json
from axon.serving import triton_metrics
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from axon.workload.feed import as_feed, settle

ENGINES = ("native", "python")


def run_h2load(url: str, frame_path: Path, streams: int, duration_s: float, warmup_s: float, log_path: Path) -> dict:
    log_path.unlink(missing_ok=True)  # h2load appends to an existing log
    cmd = [
        "h2load", "-D", f"{round(duration_s * 1000)}ms", f"--warm-up-time={round(warmup_s * 1000)}ms", "-c", "1", "-m", str(streams),
        "-d", str(frame_path), "-H", "content-type: application/grpc", "-H", "te: trailers",
        "--log-file", str(log_path), f"http://{url}{MODEL_INFER}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + warmup_s + 60)
    if done.returncode != 0:
        raise SystemExit(f"h2load failed: {done.stderr or done.stdout}")
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", done.stdout).group(1))
    durations_ms = np.array([int(line.split()[2]) / 1e3 for line in log_path.read_text().splitlines() if line.strip()])
    return {"rps": rps, "p50_ms": float(np.median(durations_ms)), "mean_ms": float(durations_ms.mean())}


def run_axon(
    server: EmbeddedServer, choice: ModelChoice, batching: str, engine: str, concurrency: int, duration_s: float, warmup_s: float
) -> dict:
    spec = LoadSpec(choice.name, concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s, engine=engine)
    r = run_case(
        spec, Target(server.endpoints, "embedded", server.version, batching), choice.feed, choice.reference, choice.dataset
    )
    if not r["passed"]:
        raise SystemExit(f"{engine} run failed: {r['verdicts']} {r['incomplete_reason']}")
    return {
        "rps": r["throughput_rps"],
        "p50_ms": r["latency_ms"]["p50"],
        "mean_ms": r["latency_ms"]["mean"],
        "client_cores": r["client"]["cores_per_process"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, help="output of `axon train` (default ./artifacts; not needed with --onnx)")
    add_model_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of generated inputs (default 0)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated (default 1,64)")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help="axon's engines set beside raw h2load (default native,python)"
    )
    parser.add_argument("--output", type=Path, default=Path("results/fidelity.json"))
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if shutil.which("h2load") is None:
        print("fidelity: h2load not found; install it with: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    try:
        unknown = sorted(set(engines) - set(ENGINES))
        if unknown:
            raise AxonError(f"--engines {unknown[0]}: expected some of {', '.join(ENGINES)}")
        artifacts = resolve_artifacts(args.artifacts)
        if artifacts is None and args.onnx is None:
            raise AxonError("no artifacts: run `axon train` (or `make bench`) first, or give --artifacts DIR or --onnx PATH")
        choice = resolve(args, artifacts, 1)
    except AxonError as exc:
        print(f"fidelity: {exc}", file=sys.stderr)
        return 2
    try:
        return _measure(args, choice, engines)
    finally:
        choice.close()


def _measure(args: argparse.Namespace, choice: ModelChoice, engines: list[str]) -> int:
    generators = ("h2load", *engines)
    batching = "on" if choice.batched else "off"  # a model without a batch axis is served unbatched
    repo = embedded_repository(choice.artifacts, batching)
    if not repo.is_dir():
        print(f"fidelity: no repository at {repo}; run `axon train` (or `make bench`) first", file=sys.stderr)
        return 2
    model = choice.name
    report: dict = {
        "machine": results.machine_info(),
        "timestamp": results.now_iso(),
        "model": model,
        "batching": batching,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cases": {},
    }
    log = args.output.with_suffix(".tritonserver.log")
    with EmbeddedServer(repo, models=[model], log_path=log) as server, tempfile.TemporaryDirectory() as tmp:
        # The native engine posts the first body settle builds from this feed: raw h2load posts the same bytes.
        settled = settle(as_feed(choice.feed), model, server.endpoints, 1, 1, choice.reference)
        report["signature"] = settled.record
        inputs = ", ".join(f"{t['name']} {t['datatype']}{t['shape']}" for t in settled.record["inputs"])
        print(
            f"{model} (batching {batching}): {len(settled.record['inputs'])} input(s) {inputs}; {settled.record['bytes_per_request']:,} bytes of tensors per request"
        )
        frame = Path(tmp) / "req.bin"
        frame.write_bytes(grpc_frame(settled.payloads.bodies[0]))
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            rows: dict[str, list[dict]] = {g: [] for g in generators}
            for _ in range(args.rounds):
                before = triton_metrics.scrape(server.endpoints.metrics, model)
                h2 = run_h2load(server.endpoints.grpc, frame, concurrency, args.duration, args.warmup, Path(tmp) / "h2.log")
                # h2load counts HTTP 200 as success; Triton's own counter is the cross-check.
                h2["triton_success"] = triton_metrics.delta(
                    before, triton_metrics.scrape(server.endpoints.metrics, model)
                ).success_count
                rows["h2load"].append(h2)
                for engine in engines:
                    rows[engine].append(run_axon(server, choice, batching, engine, concurrency, args.duration, args.warmup))
            case: dict = {"runs": rows}
            raw = rows["h2load"]
            for engine in engines:
                ratios = [e["rps"] / h["rps"] for e, h in zip(rows[engine], raw)]
                p50 = [e["p50_ms"] / h["p50_ms"] for e, h in zip(rows[engine], raw)]
                case[engine] = {"throughput_ratio": ratios, "p50_ratio": p50}
            report["cases"][f"c={concurrency}"] = case
            med = {g: {k: statistics.median(r[k] for r in rows[g]) for k in ("rps", "p50_ms")} for g in generators}
            print(
                f"c={concurrency}: raw h2load {med['h2load']['rps']:,.0f} req/s, p50 {med['h2load']['p50_ms']:.3f} ms ({args.rounds} rounds, median)"
            )
            for engine in engines:
                t, p = case[engine]["throughput_ratio"], case[engine]["p50_ratio"]
                print(
                    f"  {engine:<6} {med[engine]['rps']:>8,.0f} req/s  throughput / raw {statistics.median(t):.3f} [{min(t):.3f}-{max(t):.3f}]  "
                    f"p50 {med[engine]['p50_ms']:.3f} ms  p50 / raw {statistics.median(p):.3f} [{min(p):.3f}-{max(p):.3f}]"
                )
    write_json(args.output, report)
    print(f"fidelity: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
