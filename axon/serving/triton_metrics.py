"""Triton's own view of a run: Prometheus counters scraped before and after the window.

Counters are cumulative since the server started, so a run reports only the difference of
two scrapes. Parsing uses prometheus_client's parser, not regexes.
"""

from __future__ import annotations

import http.client
import urllib.request
from dataclasses import asdict, dataclass

from prometheus_client.parser import text_string_to_metric_families

from axon.errors import ServerError

SCRAPE_TIMEOUT_S = 5.0
# Per-model counters (summed over versions and, for failures, over reasons).
COUNTERS = {
    "success": "nv_inference_request_success",
    "failure": "nv_inference_request_failure",
    "inferences": "nv_inference_count",
    "executions": "nv_inference_exec_count",
    "request_us": "nv_inference_request_duration_us",
    "queue_us": "nv_inference_queue_duration_us",
    "compute_input_us": "nv_inference_compute_input_duration_us",
    "compute_infer_us": "nv_inference_compute_infer_duration_us",
    "compute_output_us": "nv_inference_compute_output_duration_us",
}
# Triton labels each failure with its reason; a full queue or an expired queue timeout is
# "REJECTED". Engines that cannot see gRPC status (h2load) learn of shed load only from here.
REJECTED_REASON = "REJECTED"
GAUGES = {
    "gpu_utilization": "nv_gpu_utilization",
    "gpu_memory_used_bytes": "nv_gpu_memory_used_bytes",
    "cpu_utilization": "nv_cpu_utilization",
}

Sample = dict[str, float]  # name -> value for one model (plus server-wide gauges)


def parse(text: str, model: str) -> Sample:
    """Sum the model's counters and read the server-wide gauges from an exposition text."""
    wanted = {v: k for k, v in COUNTERS.items()}
    gauges = {v: k for k, v in GAUGES.items()}
    out: Sample = dict.fromkeys(COUNTERS, 0.0)
    out["rejected"] = 0.0  # the failures whose reason is REJECTED (included in "failure")
    seen_gauges: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        # Match on the family: the parser names counter samples "<family>_total".
        for sample in family.samples:
            if family.name in wanted and sample.labels.get("model") == model:
                out[wanted[family.name]] += sample.value
                if wanted[family.name] == "failure" and sample.labels.get("reason") == REJECTED_REASON:
                    out["rejected"] += sample.value
            elif family.name in gauges:
                seen_gauges.setdefault(gauges[family.name], []).append(sample.value)
    for name, values in seen_gauges.items():
        # Several GPUs: the mean utilisation, the summed memory.
        out[name] = sum(values) / len(values) if name != "gpu_memory_used_bytes" else sum(values)
    return out


def fetch(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> str:
    """The exposition text at ``url``, or a one-line ServerError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode("utf-8", "replace")
    except http.client.HTTPException as exc:
        # Not an HTTP/1 answer at all (BadStatusLine): an HTTP/2-only server such as Triton's
        # gRPC port answers an HTTP/1 request with a binary GOAWAY frame.
        raise ServerError(
            f"cannot scrape Triton metrics at {url}: the server there does not answer HTTP/1 ({type(exc).__name__}); "
            "is it Triton's gRPC port? The metrics are served over HTTP, usually at http://HOST:8002/metrics"
        ) from None
    except OSError as exc:
        raise ServerError(f"cannot scrape Triton metrics at {url}: {exc}") from None


def scrape(url: str, model: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> Sample:
    return parse(fetch(url, timeout_s), model)


def check_endpoint(url: str, option: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> None:
    """Before any load: ``url`` answers with Triton's metrics (some ``nv_`` family), else one line naming ``option``."""
    text = fetch(url, timeout_s)
    try:
        names = [family.name for family in text_string_to_metric_families(text)]
    except ValueError:  # the parser's error on text that is not Prometheus exposition
        names = []
    if not any(name.startswith("nv_") for name in names):
        raise ServerError(
            f"{option} {url} answers, but not with Triton's metrics (no nv_* counters there); Triton serves them at http://HOST:8002/metrics by default"
        )


@dataclass(frozen=True)
class ServerDelta:
    """What the server did during the window, per request where that makes sense."""

    inference_count: int
    execution_count: int
    success_count: int
    failure_count: int
    avg_batch_size: float | None
    queue_us_per_request: float | None
    compute_input_us_per_request: float | None
    compute_infer_us_per_request: float | None
    compute_output_us_per_request: float | None
    gpu_utilization: float | None  # 0-1 ratio, where the server reports GPUs
    gpu_memory_used_bytes: float | None
    cpu_utilization: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def delta(before: Sample, after: Sample) -> ServerDelta:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in COUNTERS}
    requests = d["success"]

    def per_request(key: str) -> float | None:
        return d[key] / requests if requests > 0 else None

    return ServerDelta(
        inference_count=int(d["inferences"]),
        execution_count=int(d["executions"]),
        success_count=int(d["success"]),
        failure_count=int(d["failure"]),
        avg_batch_size=d["inferences"] / d["executions"] if d["executions"] > 0 else None,
        queue_us_per_request=per_request("queue_us"),
        compute_input_us_per_request=per_request("compute_input_us"),
        compute_infer_us_per_request=per_request("compute_infer_us"),
        compute_output_us_per_request=per_request("compute_output_us"),
        gpu_utilization=after.get("gpu_utilization"),
        gpu_memory_used_bytes=after.get("gpu_memory_used_bytes"),
        cpu_utilization=after.get("cpu_utilization"),
    )
