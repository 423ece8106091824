"""Measure the measurer: axon's closed-loop generator against h2load on the same server.

h2load (Debian's nghttp2-client) is a native HTTP/2 load generator. It posts one gRPC
ModelInfer frame, serialised in advance, with N streams in flight on one connection. Both
generators hit the same embedded Triton in one run, alternating, and the script prints
axon/h2load throughput ratios and the latency gap. Targets (issue 4, our 2-core machine):
throughput ratio >= 0.85 at c=64; p50 gap <= 0.15 ms at c=1.

    python benchmarks/fidelity.py [--artifacts artifacts] [--duration 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from axon import metrics, results
from axon.atomic import write_json
from axon.backends import embedded_repository
from axon.bench import Target, run_case
from axon.loadgen import LoadSpec
from axon.payloads import MODEL_INFER, build_payloads, load_rows
from axon.server import EmbeddedServer

MODEL = "particle_classifier_v1"


def grpc_frame(payload: bytes) -> bytes:
    """gRPC length-prefixed message: no compression flag, 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def run_h2load(url: str, frame_path: Path, streams: int, duration_s: float, warmup_s: float, log_path: Path) -> dict:
    cmd = [
        "h2load", "-D", f"{duration_s:g}", f"--warm-up-time={warmup_s:g}", "-c", "1", "-m", str(streams),
        "-d", str(frame_path), "-H", "content-type: application/grpc", "-H", "te: trailers",
        "--log-file", str(log_path), f"http://{url}{MODEL_INFER}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + warmup_s + 60)
    if done.returncode != 0:
        raise SystemExit(f"h2load failed: {done.stderr or done.stdout}")
    rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", done.stdout).group(1))
    succeeded = int(re.search(r"(\d+) succeeded", done.stdout).group(1))
    durations_ms = np.array([int(line.split()[2]) / 1e3 for line in log_path.read_text().splitlines() if line.strip()])
    return {"rps": rps, "succeeded": succeeded, "p50_ms": float(np.median(durations_ms)), "mean_ms": float(durations_ms.mean())}


def run_axon(server: EmbeddedServer, features: np.ndarray, concurrency: int, duration_s: float, warmup_s: float, processes: int | str) -> dict:
    spec = LoadSpec(MODEL, concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s, processes=processes if processes == "auto" else min(int(processes), concurrency))
    r = run_case(spec, Target(server.endpoints, "embedded", server.version, "on"), features)
    return {"rps": r["throughput_rps"], "p50_ms": r["latency_ms"]["p50"], "mean_ms": r["latency_ms"]["mean"], "processes": r["load"]["processes"], "client_cores": r["client"]["cores_per_process"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per generator and concurrency")
    parser.add_argument("--processes", default="auto", help="axon worker processes (default auto, as axon bench)")
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
    payloads, _ = build_payloads(MODEL, features, 1, limit=1)
    report: dict = {"machine": results.machine_info(), "timestamp": results.now_iso(), "duration_s": args.duration, "cases": {}}
    log = args.output.with_suffix(".tritonserver.log")
    with EmbeddedServer(repo, models=[MODEL], log_path=log) as server, tempfile.TemporaryDirectory() as tmp:
        frame = Path(tmp) / "req.bin"
        frame.write_bytes(grpc_frame(payloads[0]))
        for concurrency in (1, 64):
            rows: dict[str, list[dict]] = {"h2load": [], "axon": []}
            for _ in range(args.rounds):
                before = metrics.scrape(server.endpoints.metrics, MODEL)
                h2 = run_h2load(server.endpoints.grpc, frame, concurrency, args.duration, args.warmup, Path(tmp) / "h2.log")
                after = metrics.scrape(server.endpoints.metrics, MODEL)
                # h2load counts HTTP 200 as success; Triton's own counter is the cross-check.
                h2["triton_success"] = metrics.delta(before, after).success_count
                rows["h2load"].append(h2)
                rows["axon"].append(run_axon(server, features, concurrency, args.duration, args.warmup, args.processes))
            med = {g: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "mean_ms")} for g, runs in rows.items()}
            case = {
                "runs": rows,
                "median": med,
                "throughput_ratio": med["axon"]["rps"] / med["h2load"]["rps"],
                "p50_gap_ms": med["axon"]["p50_ms"] - med["h2load"]["p50_ms"],
                "p50_minus_h2load_mean_ms": med["axon"]["p50_ms"] - med["h2load"]["mean_ms"],
            }
            report["cases"][f"c={concurrency}"] = case
            print(
                f"c={concurrency:<3} h2load {med['h2load']['rps']:8.0f} req/s p50 {med['h2load']['p50_ms']:.3f} ms mean {med['h2load']['mean_ms']:.3f} ms | "
                f"axon {med['axon']['rps']:8.0f} req/s p50 {med['axon']['p50_ms']:.3f} ms | ratio {case['throughput_ratio']:.2f}, "
                f"p50 gap {case['p50_gap_ms']:+.3f} ms (vs h2load mean {case['p50_minus_h2load_mean_ms']:+.3f} ms)"
            )
    write_json(args.output, report)
    print(f"fidelity: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
