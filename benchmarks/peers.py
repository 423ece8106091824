"""Peers side by side: Triton's perf_analyzer, raw h2load, axon's native and python engines, one server.

All four generators hit the same embedded Triton (v1, batching on) in one run, interleaved case
by case (perf_analyzer, h2load, native, python, then the next round), closed loop (c=1, c=64)
and open loop at constant rates up to the server's limit. Printed per generator and case,
median over rounds: throughput, p50/p99, client CPU per request, and for open loop the
achieved/offered ratio and the share of requests sent late.

How each number is taken (they are not all the same kind, and the table says so):

- perf_analyzer: its own report (``-f`` CSV: last stable windows, latencies from the *actual*
  send); "delayed" is its own warning's share. Run in sync mode for closed loop, ``--request-
  rate-range R --request-distribution constant`` for open loop, under a memory limit (``ulimit
  -v``, RLIMIT_AS) so that a blow-up (issue 19: 24 GB at 8,000/s) is reported as "failed at
  R/s" instead of taking the machine down.
- raw h2load: its own req/s and its log's durations (from the actual send: h2load's view).
- axon native / python: the record (open loop: latency from the intended send time,
  ``schedule.late_fraction`` sent > 1 ms late).
- client CPU per request: the process's CPU (perf_analyzer, raw h2load: whole run, from
  rusage, over Triton's count of the requests they sent; axon: ``client.cpu_us_per_request``).

Install the peer once with ``make peers`` (tritonclient 2.50.0's manylinux wheel, the last that
ships perf_analyzer, into ``.peers/``, never the main venv), which then runs this script.

    python benchmarks/peers.py [--peers .peers/site] [--artifacts artifacts] [--duration 4] [--rounds 2] [--rates 2000,4000,8000,12000]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from axon.case import Target, run_case
from axon.engines.loadgen import LoadSpec
from axon.engines.native_open import open_topology
from axon.engines.payloads import MODEL_INFER, grpc_frame, load_rows
from axon.records import results
from axon.records.atomic import write_json
from axon.serving import triton_metrics
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from axon.workload.feed import Feed, settle
from axon.workload.signature import from_onnx

MODEL = "particle_classifier_v1"
GENERATORS = ("perf_analyzer", "h2load", "native", "python")
PA_WINDOWS = 3  # perf_analyzer measures at least 3 windows; each is duration / 3
PA_EXTRA_S = 60.0  # start-up and stabilisation beyond the windows


def _cpu_children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _success(server) -> float:
    return triton_metrics.scrape(server.endpoints.metrics, MODEL)["success"]


def _limit_memory(cmd: list[str], limit_bytes: int) -> list[str]:
    """The command under util-linux's prlimit: an address-space cap set before exec.

    Not a pre-exec hook: with grpc loaded here, a hook makes Python fork() rather than vfork()
    and grpc's fork handlers run in the child (an h2load child died of SIGABRT that way).
    """
    return ["prlimit", f"--as={limit_bytes}", *cmd]


def perf_analyzer(pa: Path, server, case: dict, duration_s: float, memory_gb: float, tmp: Path) -> dict:
    """One perf_analyzer run; a crash or a kill under the memory limit is a failure, said as such."""
    report = tmp / "pa.csv"
    report.unlink(missing_ok=True)
    window_ms = max(round(duration_s * 1000 / PA_WINDOWS), 500)
    load = (
        ["--concurrency-range", str(case["concurrency"])]
        if case["mode"] == "closed"
        else ["--request-rate-range", str(case["rate"]), "--request-distribution", "constant"]
    )
    # -s 1000: every window counts as stable, so the run takes PA_WINDOWS windows, not "until
    # stable" (on 2 shared cores it otherwise gives up: "Failed to obtain stable measurement").
    cmd = [str(pa), "-m", MODEL, "-u", server.endpoints.grpc, "-i", "grpc", "-b", "1", "-p", str(window_ms), "-r", str(PA_WINDOWS), "-s", "1000",
           "--percentile", "99", "-f", str(report), *load]  # fmt: skip
    lib = pa.parent.parent / "nvidia" / "cuda_runtime" / "lib"  # libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    cpu0, ok0 = _cpu_children_s(), _success(server)
    try:
        done = subprocess.run(
            _limit_memory(cmd, int(memory_gb * 2**30)), capture_output=True, text=True, env=env, timeout=duration_s + PA_EXTRA_S
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {duration_s + PA_EXTRA_S:.0f} s"}
    cpu, requests = _cpu_children_s() - cpu0, _success(server) - ok0
    if done.returncode != 0 or not report.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        signalled = f" (killed by signal {-done.returncode})" if done.returncode < 0 else ""
        return {"failed": f"exit {done.returncode}{signalled}: {last[0][:160]}"}
    with open(report) as fh:
        row = next(csv.DictReader(fh))
    out = {
        "rps": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1e3,
        "p99_ms": float(row["p99 latency"]) / 1e3,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else math.nan,
    }
    if case["mode"] == "open":
        sent = re.search(r"Avg send request rate: ([\d.]+)", done.stdout)
        delayed = re.search(r"([\d.]+)% of the requests were delayed", done.stdout)
        out["achieved_ratio"] = float(sent.group(1)) / case["rate"] if sent else math.nan
        out["late_fraction"] = float(delayed.group(1)) / 100 if delayed else 0.0
    return out


def raw_h2load(server, frame: Path, case: dict, duration_s: float, warmup_s: float, tmp: Path) -> dict:
    """h2load by hand: its own req/s and its log's durations (from the actual send)."""
    log = tmp / "h2.log"
    log.unlink(missing_ok=True)  # h2load appends to an existing log
    if case["mode"] == "closed":
        shape = ["-c", "1", "-m", str(case["concurrency"])]
    else:
        _, streams, _ = open_topology(case["rate"])  # the streams the native engine would give it
        shape = ["-c", "1", "-m", str(streams), f"--rps={case['rate']:g}"]
    cmd = ["h2load", "-D", f"{round(duration_s * 1000)}ms", f"--warm-up-time={round(warmup_s * 1000)}ms", *shape, "-t", "1", "-d", str(frame),
           "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", str(log), f"http://{server.endpoints.grpc}{MODEL_INFER}"]  # fmt: skip
    cpu0, ok0 = _cpu_children_s(), _success(server)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + warmup_s + 60)
    cpu, requests = _cpu_children_s() - cpu0, _success(server) - ok0
    found = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", done.stdout)
    if done.returncode != 0 or not found:
        return {"failed": f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-160:]}"}
    durations_ms = np.array([int(line.split()[2]) / 1e3 for line in log.read_text().splitlines() if line.strip()])
    out = {
        "rps": float(found.group(1)),
        "p50_ms": float(np.median(durations_ms)),
        "p99_ms": float(np.percentile(durations_ms, 99)),
        "cpu_us_per_request": cpu / requests * 1e6 if requests else math.nan,
    }
    if case["mode"] == "open":
        out["achieved_ratio"] = len(durations_ms) / duration_s / case["rate"]
        out["late_fraction"] = math.nan  # raw h2load does not know its schedule
    return out


def axon_engine(server, features, engine: str, case: dict, duration_s: float, warmup_s: float) -> dict:
    load = (
        {"concurrency": case["concurrency"]}
        if case["mode"] == "closed"
        else {"rate": float(case["rate"]), "distribution": "constant"}
    )
    spec = LoadSpec(MODEL, duration_s=duration_s, warmup_s=warmup_s, engine=engine, max_error_rate=1.0, **load)
    r = run_case(spec, Target(server.endpoints, "embedded", server.version, "on"), features)
    if not r["complete"]:
        return {"failed": r["incomplete_reason"]}
    out = {"rps": r["throughput_rps"], "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"], "cpu_us_per_request": r["client"]["cpu_us_per_request"] or math.nan,
           "verdicts": r["verdicts"]}  # fmt: skip
    if case["mode"] == "open":
        s = r["schedule"]
        out.update(achieved_ratio=s["sent_rps"] / case["rate"], late_fraction=s.get("late_fraction") or 0.0, behind=s["behind"])
    return out


def _median(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else math.nan


def _fmt(value: float, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def table(cases: list[dict], rows: dict) -> str:
    lines = [
        "| load | generator | req/s | p50 ms | p99 ms | client CPU µs/req | achieved / offered | sent late |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        for g in GENERATORS:
            runs = rows[case["label"]][g]
            failed = [r["failed"] for r in runs if "failed" in r]
            good = [r for r in runs if "failed" not in r]
            if not good:
                where = f" at {case['rate']:,}/s" if case["mode"] == "open" else ""
                lines.append(f"| {case['label']} | {g} | failed{where} | | | | | {failed[0][:60] if failed else ''} |")
                continue
            med = {
                k: _median(r.get(k) for r in good)
                for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request", "achieved_ratio", "late_fraction")
            }
            note = f" ({len(failed)} of {len(runs)} rounds failed)" if failed else ""
            opened = case["mode"] == "open"
            cells = [case["label"], g + note, _fmt(med["rps"], ",.0f"), _fmt(med["p50_ms"], ".2f"), _fmt(med["p99_ms"], ".2f"), _fmt(med["cpu_us_per_request"], ".1f"),
                     _fmt(med["achieved_ratio"], ".3f") if opened else "", _fmt(med["late_fraction"], ".1%") if opened else ""]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--peers",
        type=Path,
        default=Path(".peers/site"),
        help="where `make peers` installed tritonclient 2.50.0 (its bin/perf_analyzer)",
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--rates", default="2000,4000,8000,12000", help="open-loop constant rates, req/s")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="perf_analyzer's address-space limit (ulimit -v)")
    parser.add_argument("--output", type=Path, default=Path("results/peers.json"))
    args = parser.parse_args()
    pa = args.peers / "bin" / "perf_analyzer"
    problems = []
    if not pa.is_file():
        problems.append(f"no perf_analyzer at {pa}: run `make peers` (installs tritonclient==2.50.0 into .peers/)")
    if shutil.which("h2load") is None:
        problems.append("h2load not found: apt-get install nghttp2-client")
    repo = embedded_repository(args.artifacts, "on")
    if not repo.is_dir():
        problems.append(f"no repository at {repo}: run `axon train` (or `make bench`) first")
    try:
        concurrencies = [int(c) for c in args.concurrency.split(",") if c]
        rates = [int(r) for r in args.rates.split(",") if r]
    except ValueError:
        problems.append("--concurrency and --rates take comma-separated whole numbers")
    if args.rounds < 1 or args.duration <= 0:
        problems.append("--rounds must be >= 1 and --duration > 0")
    if problems:
        print(f"peers: {problems[0]}", file=sys.stderr)
        return 2
    features, _ = load_rows(args.artifacts)
    onnx = args.artifacts / "models" / MODEL / "model.onnx"
    payloads = settle(Feed(rows=features, signature=from_onnx(onnx)), MODEL, None, 1, 1, None).payloads.bodies
    cases = [{"label": f"closed c={c}", "mode": "closed", "concurrency": c} for c in concurrencies]
    cases += [{"label": f"open {r:,}/s", "mode": "open", "rate": r} for r in rates]
    rows: dict = {c["label"]: {g: [] for g in GENERATORS} for c in cases}
    report: dict = {"machine": results.machine_info(), "timestamp": results.now_iso(), "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
                    "memory_limit_gb": args.memory_gb, "command": " ".join(sys.argv), "cases": rows}  # fmt: skip
    log = args.output.with_suffix(".tritonserver.log")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedServer(repo, models=[MODEL], log_path=log) as server, tempfile.TemporaryDirectory() as tmp:
        frame = Path(tmp) / "req.bin"
        frame.write_bytes(grpc_frame(payloads[0]))
        report["server"] = {"version": server.version, "batching": "on", "model": MODEL}
        for round_ in range(args.rounds):
            for case in cases:
                for g in GENERATORS:
                    if g == "perf_analyzer":
                        r = perf_analyzer(pa, server, case, args.duration, args.memory_gb, Path(tmp))
                    elif g == "h2load":
                        r = raw_h2load(server, frame, case, args.duration, args.warmup, Path(tmp))
                    else:
                        r = axon_engine(server, features, g, case, args.duration, args.warmup)
                    rows[case["label"]][g].append(r)
                    said = r.get("failed") or f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
                    print(f"round {round_ + 1}/{args.rounds} {case['label']:<14} {g:<13} {said}", file=sys.stderr, flush=True)
    write_json(args.output, report)
    print(table(cases, rows))
    print(
        f"\n(median over {args.rounds} interleaved round(s) of {args.duration:g} s; one embedded Triton {report['server']['version']}, {MODEL}, batching on)"
    )
    print(f"peers: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
