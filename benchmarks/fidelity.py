"""Measure the measurer: raw h2load, axon's native engine and axon's python engine on one server.

h2load (Debian's nghttp2-client) run by hand is the reference: one pre-serialised gRPC
ModelInfer frame, N streams on one connection, its own req/s and its log's median latency.
The native engine drives the same h2load through axon (body check, Triton cross-check,
histogram); the python engine is axon's grpc.aio client. All three hit the same embedded
Triton in one run, interleaved (raw, native, python, raw, native, python, ...), and the script
prints each engine's throughput ratio to raw h2load with its spread over rounds, and its p50
gap. Targets (issue 9, our 2-core machine): native >= 0.95x raw h2load at c=64, p50 within 5%
at c=1 and c=64.

    python benchmarks/fidelity.py [--artifacts artifacts] [--duration 5] [--rounds 3]
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
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import MODEL_INFER, grpc_frame, load_rows
from axon.records import results
from axon.records.atomic import write_json
from axon.serving import triton_metrics
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from axon.workload.feed import Feed, settle
from axon.workload.signature import from_onnx

MODEL = "particle_classifier_v1"
GENERATORS = ("h2load", "native", "python")


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


def run_axon(server: EmbeddedServer, features: np.ndarray, engine: str, concurrency: int, duration_s: float, warmup_s: float) -> dict:
    spec = LoadSpec(MODEL, concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s, engine=engine)
    r = run_case(spec, Target(server.endpoints, "embedded", server.version, "on"), features)
    if not r["passed"]:
        raise SystemExit(f"{engine} run failed: {r['verdicts']} {r['incomplete_reason']}")
    return {"rps": r["throughput_rps"], "p50_ms": r["latency_ms"]["p50"], "mean_ms": r["latency_ms"]["mean"], "client_cores": r["client"]["cores_per_process"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated (default 1,64)")
    parser.add_argument("--output", type=Path, default=Path("results/fidelity.json"))
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        print("fidelity: h2load not found; install it with: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    repo = embedded_repository(args.artifacts, "on")
    if not repo.is_dir():
        print(f"fidelity: no repository at {repo}; run `axon train` (or `make bench`) first", file=sys.stderr)
        return 2
    features, _ = load_rows(args.artifacts)
    onnx = args.artifacts / "models" / MODEL / "model.onnx"
    payloads = settle(Feed(rows=features, signature=from_onnx(onnx)), MODEL, None, 1, 1, None).payloads.bodies
    report: dict = {"machine": results.machine_info(), "timestamp": results.now_iso(), "duration_s": args.duration, "rounds": args.rounds, "cases": {}}
    log = args.output.with_suffix(".tritonserver.log")
    with EmbeddedServer(repo, models=[MODEL], log_path=log) as server, tempfile.TemporaryDirectory() as tmp:
        frame = Path(tmp) / "req.bin"
        frame.write_bytes(grpc_frame(payloads[0]))
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            rows: dict[str, list[dict]] = {g: [] for g in GENERATORS}
            for _ in range(args.rounds):
                before = triton_metrics.scrape(server.endpoints.metrics, MODEL)
                h2 = run_h2load(server.endpoints.grpc, frame, concurrency, args.duration, args.warmup, Path(tmp) / "h2.log")
                # h2load counts HTTP 200 as success; Triton's own counter is the cross-check.
                h2["triton_success"] = triton_metrics.delta(before, triton_metrics.scrape(server.endpoints.metrics, MODEL)).success_count
                rows["h2load"].append(h2)
                for engine in ("native", "python"):
                    rows[engine].append(run_axon(server, features, engine, concurrency, args.duration, args.warmup))
            case: dict = {"runs": rows}
            raw = rows["h2load"]
            for engine in ("native", "python"):
                ratios = [e["rps"] / h["rps"] for e, h in zip(rows[engine], raw)]
                p50 = [e["p50_ms"] / h["p50_ms"] for e, h in zip(rows[engine], raw)]
                case[engine] = {"throughput_ratio": ratios, "p50_ratio": p50}
            report["cases"][f"c={concurrency}"] = case
            med = {g: {k: statistics.median(r[k] for r in rows[g]) for k in ("rps", "p50_ms")} for g in GENERATORS}
            print(f"c={concurrency}: raw h2load {med['h2load']['rps']:,.0f} req/s, p50 {med['h2load']['p50_ms']:.3f} ms ({args.rounds} rounds, median)")
            for engine in ("native", "python"):
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
