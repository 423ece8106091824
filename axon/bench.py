"""One benchmark case: offer a load to a server and return the result record.

The steps: check the model is served, build payloads from real rows (and their reference
outputs), start the workers, scrape Triton's metrics at the window's edges, merge what the
workers measured, and judge the run (errors, mismatches, schedule lag, client CPU).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axon import export, loadgen, metrics, results, stats
from axon.errors import ServerError
from axon.loadgen import LoadSpec
from axon.server import Endpoints, wait_ready
from axon.worker import CLIENT_BOUND_CORES, WorkerJob, WorkerPool, build_payloads

MODEL_CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Target:
    endpoints: Endpoints
    backend: str = "external"
    version: str | None = None
    batching: str | None = None  # "on"/"off" when axon knows it


Progress = Callable[[float, int, float], None]  # (elapsed s, requests sent, current p99 ms)


def _reference_outputs(onnx_path: Path | None, chunks: list[np.ndarray]) -> list[np.ndarray] | None:
    if onnx_path is None or not Path(onnx_path).is_file():
        return None
    sess = export.session(Path(onnx_path))
    return [sess.run([export.OUTPUT_NAME], {export.INPUT_NAME: c})[0] for c in chunks]


def _shares(spec: LoadSpec) -> list[LoadSpec]:
    if spec.mode == "closed":
        return [dataclasses.replace(spec, concurrency=c, requests=None if spec.requests is None else max(1, spec.requests // spec.processes)) for c in loadgen.split_evenly(spec.concurrency, spec.processes)]
    return [dataclasses.replace(spec, rate=spec.rate / spec.processes) for _ in range(spec.processes)]


def run_case(
    spec: LoadSpec,
    target: Target,
    features: np.ndarray,
    reference_onnx: Path | None = None,
    dataset: dict | None = None,
    on_progress: Progress | None = None,
    client_bound_cores: float = CLIENT_BOUND_CORES,
) -> dict:
    """Run one load case against a ready server and return its result record.

    A worker process using more than ``client_bound_cores`` of a core flags the run client-bound.
    """
    spec = spec.validate().resolved().validate()
    ep = target.endpoints
    try:
        wait_ready(ep.grpc, [spec.model], MODEL_CHECK_TIMEOUT_S, ssl=ep.tls, headers=ep.headers or None)
    except ServerError as exc:
        raise ServerError(f"model {spec.model!r} is not served at {ep.grpc}: {exc}") from None
    payloads, chunks = build_payloads(spec.model, features, spec.rows_per_request)
    expected = _reference_outputs(reference_onnx, chunks)
    jobs = [WorkerJob(i, share, ep.grpc, ep.tls, dict(ep.headers), payloads, expected) for i, share in enumerate(_shares(spec))]
    pool = WorkerPool(jobs)
    before = after = None
    interrupted = False
    try:
        window_start = pool.start() + spec.warmup_s
        while pool.running():
            if before is None and ep.metrics and time.time() >= window_start:
                before = metrics.scrape(ep.metrics, spec.model)
            if on_progress is not None:
                sent, p99 = pool.sent_and_p99()
                on_progress(max(time.time() - window_start, 0.0), sent, p99)
            # Wake right at the window's start so the "before" scrape lines up with it.
            wait = window_start - time.time() if before is None and ep.metrics else 0.1
            time.sleep(min(wait, 0.1) if wait > 0 else 0.1)
    except KeyboardInterrupt:
        interrupted = True
        pool.stop()
    outcomes = pool.results(timeout_s=spec.timeout_s + 10)
    if ep.metrics and before is not None:
        try:
            after = metrics.scrape(ep.metrics, spec.model)
        except ServerError:
            after = None  # the server died: keep what the client measured
    record = _assemble(spec, target, outcomes, before, after, expected is not None, dataset, len(jobs), client_bound_cores)
    if interrupted:
        record["complete"] = False
        record["incomplete_reason"] = "interrupted"
    return record


def _assemble(
    spec: LoadSpec, target: Target, outcomes: list[dict], before, after, checking: bool, dataset: dict | None, n_workers: int, client_bound_cores: float
) -> dict:
    errors = [o["error"] for o in outcomes if "error" in o]
    good = [o for o in outcomes if "error" not in o]
    histogram = stats.merge([o["latency"] for o in good])
    lag = stats.merge([o["lag"] for o in good]) if spec.mode == "open" else None
    sent = sum(o["sent"] for o in good)
    ok = sum(o["ok"] for o in good)
    failures: dict[str, int] = {}
    for o in good:
        for code, n in o["failures"].items():
            failures[code] = failures.get(code, 0) + n
    measured_s = max((o["measured_s"] for o in good), default=float("nan"))
    cores = [o["client_cores"] for o in good]
    client_bound = any(c > client_bound_cores for c in cores if not math.isnan(c))
    # Every worker sees the same dead server: say each reason once.
    reasons = list(dict.fromkeys([o["incomplete_reason"] for o in good if o["incomplete_reason"]] + errors))
    if len(good) < n_workers and not errors:
        reasons.append("a worker did not report")
    throughput = ok / measured_s if measured_s and measured_s > 0 else 0.0
    verdicts: list[str] = []
    error_rate = (sent - ok) / sent if sent else 1.0
    if sent == 0:
        verdicts.append("no request was measured")
    elif error_rate > spec.max_error_rate:
        verdicts.append(f"error rate {error_rate:.2%} > {spec.max_error_rate:.2%} ({failures})")
    mismatches = sum(o["mismatches"] for o in good)
    if mismatches:
        verdicts.append(f"{mismatches} sampled responses differ from local onnxruntime")
    schedule = None
    if lag is not None:
        lag_summary = stats.LatencySummary.of(lag)
        achieved = sent / measured_s if measured_s else 0.0
        # Requests are counted by intended send time, so the number sent follows the (random)
        # schedule; only the lag between intended and real send shows a client falling behind.
        behind = lag_summary.count > 0 and lag_summary.p99 / 1e3 > loadgen.MAX_SCHEDULE_LAG_S
        schedule = {"lag_p99_ms": lag_summary.p99, "lag_max_ms": lag_summary.max, "offered_rps": spec.rate, "sent_rps": achieved, "behind": bool(behind)}
        if behind:
            verdicts.append(f"the client fell behind its schedule (send lag p99 {lag_summary.p99:.2f} ms > {loadgen.MAX_SCHEDULE_LAG_S * 1e3:g} ms)")
    load = {
        "mode": spec.mode,
        "concurrency": spec.concurrency,
        "rate": spec.rate,
        "distribution": spec.distribution if spec.mode == "open" else None,
        "rows_per_request": spec.rows_per_request,
        "processes": spec.processes,
        "warmup_s": spec.warmup_s,
        "duration_s": spec.duration_s,
        "request_limit": spec.requests,
        "timeout_s": spec.timeout_s,
    }
    return {
        "schema_version": results.SCHEMA_VERSION,
        "timestamp": results.now_iso(),
        "machine": results.machine_info(),
        "git_commit": results.git_commit(),
        "server": {"backend": target.backend, "version": target.version, **target.endpoints.as_dict()},
        "model": spec.model,
        "batching": target.batching,
        "dataset": dataset,
        "load": load,
        "measured_s": measured_s,
        "requests": {"sent": sent, "ok": ok, "failed": sent - ok, "timed_out": failures.get(loadgen.TIMEOUT, 0), "failures": failures},
        "throughput_rps": throughput,
        "throughput_inferences_per_s": throughput * spec.rows_per_request,
        "latency_ms": stats.LatencySummary.of(histogram).as_dict(),
        "histogram": stats.encode(histogram),
        "schedule": schedule,
        "correctness": {"checked": sum(o["checked"] for o in good), "mismatches": mismatches, "enabled": checking},
        "client": {"cores_per_process": cores, "client_bound": client_bound, "threshold_cores": client_bound_cores},
        "server_metrics": metrics.delta(before, after).as_dict() if before is not None and after is not None else None,
        "complete": not reasons,
        "incomplete_reason": "; ".join(reasons) or None,
        "passed": not verdicts and not reasons,
        "verdicts": verdicts,
    }


