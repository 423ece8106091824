"""The result record, typed: what every run leaves behind (docs/results-schema.md says each field's unit).

The JSON on disk is these dicts as they are (schema version 1). ``TypedDict`` keeps them plain
dicts, so a record written by one version of axon reads the same in another, while a type
checker and a reader see which keys exist. Optional parts (a study's tag, a merge's sources,
many hosts' breakdown) are ``total=False`` classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypedDict

from axon.records.answered import LatencyApart

SCHEMA_VERSION = 1


class Machine(TypedDict):
    hostname: str
    cpu: str
    cores: int
    memory_gib: float
    python: str
    platform: str


class ServerInfo(TypedDict, total=False):
    backend: str  # embedded, docker, external, in-process
    version: str | None
    grpc: str
    http: str | None
    metrics: str | None
    tls: bool
    ca_file: str | None


class Load(TypedDict, total=False):
    mode: str  # closed | open
    concurrency: int | None
    rate: float | None
    distribution: str | None  # constant | poisson | None
    rows_per_request: int
    processes: int | str
    connections: int | None
    threads: int  # direct engine only
    warmup_s: float
    duration_s: float
    request_limit: int | None
    timeout_s: float
    on_unavailable: str
    timeline_s: float | None


class EngineInfo(TypedDict, total=False):
    name: str  # python | native | direct
    tool: str
    version: str
    requested: str
    notice: str | None
    processes: int
    connections: int
    streams_per_connection: int
    in_flight_limit: int  # open loop: the most requests the client holds in flight (all processes, connections)
    threads: int


class Requests(TypedDict, total=False):
    sent: int
    ok: int
    failed: int
    timed_out: int
    failures: dict[str, int]
    failure_details: dict[str, str]
    outages: int
    rejected: int


class ServerMemory(TypedDict):
    """The server's memory over a run axon watched (docs/results-schema.md, "What was measured")."""

    watched: bool
    reason: str | None  # why not watched
    method: str | None
    samples: int
    start_bytes: int | None
    end_bytes: int | None
    peak_bytes: int | None
    growth_bytes: int | None
    limit_bytes: int | None
    stopped_by_limit: bool


class LatencyMs(TypedDict):
    count: int
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float
    stddev: float


class Schedule(TypedDict, total=False):
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    offered_rps: float | None
    sent_rps: float
    late_fraction: float | None
    in_flight_limit: int | None  # the client's bound on requests in flight (None: the engine does not say)
    not_sent: int | None  # requests due in the window but not sent: the bound was reached (CLIENT_OVERLOAD)
    behind: bool


class Correctness(TypedDict):
    checked: int
    mismatches: int
    enabled: bool
    reason: str | None
    method: str


class Client(TypedDict):
    cores_per_process: list[float]
    client_bound: bool
    threshold_cores: float
    cpu_us_per_request: float | None
    cpu_us_per_row: float | None


class Repeat(TypedDict):
    index: int
    of: int


class RunRecord(TypedDict, total=False):
    """One run: every field of docs/results-schema.md's first three tables, and the optional parts."""

    schema_version: int
    axon_version: str
    timestamp: str
    machine: Machine
    git_commit: str | None
    server: ServerInfo
    model: str
    batching: str | None
    dataset: dict | None
    engine: EngineInfo
    repeat: Repeat | None
    load: Load
    measured_s: float
    requests: Requests
    throughput_rps: float  # NaN where nothing could be confirmed (throughput_basis "none")
    throughput_basis: str  # "client", "server" (native: Triton's confirmed share), "none"; absent from older records
    throughput_inferences_per_s: float
    latency_ms: LatencyMs
    histogram: str  # encoded HDR histogram, µs
    latency_apart: LatencyApart | None  # latencies kept out of latency_ms; absent from older records
    schedule: Schedule | None
    correctness: Correctness
    verification: dict | None  # native engine only
    signature: dict  # the model's inputs and outputs as sent (axon.workload.signature.SignatureRecord + bytes_per_response, notice); absent from older records
    client: Client
    server_metrics: dict | None
    server_metrics_missing: str | None
    server_memory: ServerMemory  # absent from records older than the memory guard
    timeline: list[dict] | None
    complete: bool
    incomplete_reason: str | None
    passed: bool
    verdicts: list[str]
    # Optional parts: a study's tag, a pooled case's repeats, a merge's sources, many hosts.
    study: dict
    over_repeats: dict
    repeats: list[RunRecord]
    merged: dict
    hosts: dict


class ResultsFile(TypedDict):
    schema_version: int
    runs: list[RunRecord]


def case_label(record: Mapping) -> str:
    """A case as people name it: ``<model>, batching on, c=64``."""
    load = record["load"]
    where = f"c={load['concurrency']}" if load["mode"] == "closed" else f"rate={load['rate']:g}/s"
    return f"{record['model']}, batching {record.get('batching') or '?'}, {where}"


def add_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Failure counts by status, summed over workers, hosts or runs (the one place they add up)."""
    total: dict[str, int] = {}
    for one in counts:
        for code, n in one.items():
            total[code] = total.get(code, 0) + n
    return total
