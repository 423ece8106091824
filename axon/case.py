"""One case: prepare it once, run it on its engine, assemble the one result record.

:func:`prepare` does everything that can be said before a server starts: the spec validated,
the engine chosen (:func:`axon.engines.choose`, or the hosts' own rule), the engine's shape of
the load checked. Every face (the CLI's bench, study and tune, the pytest plugin) calls it once
per case and hands the result to :func:`run_case`, which checks the model is served, builds
payloads from real rows (and their reference outputs), lets the engine offer the load (it
scrapes Triton's metrics inside the window), merges what its workers measured, and judges the
run (errors, mismatches, schedule lag, client CPU, the native engine's count check).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from axon import engines
from axon.engines import Engine, EngineChoice, EngineRun, Progress, Workload, loadgen
from axon.engines.direct import DirectEngine
from axon.engines.loadgen import LoadSpec
from axon.engines.python import CLIENT_BOUND_CORES
from axon.errors import AxonError, ServerError
from axon.records import answered, results, stats
from axon.records.schema import SCHEMA_VERSION, add_counts
from axon.serving import triton_metrics
from axon.serving.endpoints import Endpoints, wait_ready
from axon.serving.watch import ServerWatch, Watchable, default_limit_bytes, not_watched
from axon.workload.feed import Feed, as_feed, settle
from axon.workload.signature import served_models

if TYPE_CHECKING:
    from axon.engines.hosts.dask import DaskHosts

MODEL_CHECK_TIMEOUT_S = 5.0
# What an engine records when the run's guard stopped it ("interrupted") or its server died
# ("server unavailable"): the guard's own reason says more, and replaces them.
GUARD_SYMPTOMS = ("interrupted", "server unavailable")


@dataclass(frozen=True)
class Target:
    """The server a case meets.

    ``server`` is the server object when axon started it (it can say its death and its
    memory): the run is then watched, its load stopped when the server dies or its memory
    passes ``max_server_memory`` bytes (None: the default, a fraction of this machine's
    memory; 0: not guarded, still recorded). Without it (``--url``) the record says the
    server's memory was not watched.
    """

    endpoints: Endpoints
    backend: str = "external"
    version: str | None = None
    batching: str | None = None  # "on"/"off" when axon knows it
    server: Watchable | None = field(default=None, compare=False, repr=False)
    max_server_memory: int | None = None

    @classmethod
    def of(cls, server, batching: str | None, max_server_memory: int | None = None) -> Target:
        """The target for a server from :func:`axon.serving.backends.make_server`: watched when axon started it."""
        watchable = server if server.backend != "external" else None
        return cls(server.endpoints, server.backend, getattr(server, "version", None), batching, watchable, max_server_memory)

    def watch(self) -> ServerWatch | None:
        if self.server is None:
            return None
        limit = default_limit_bytes() if self.max_server_memory is None else self.max_server_memory
        return ServerWatch(self.server, limit)


@dataclass(frozen=True)
class PreparedCase:
    """A case ready to run: its spec validated (and "auto" resolved), its engine chosen."""

    spec: LoadSpec
    choice: EngineChoice
    engine: Engine

    def vary(self, **load) -> PreparedCase:
        """The same case at another load (concurrency, windows, ...): the new values checked, the engine choice kept."""
        spec = replace(self.spec, **load).validate()
        return PreparedCase(spec, self.choice, engines.engine_for(self.choice, spec))


def prepare(
    spec: LoadSpec,
    has_metrics: bool = True,
    tls: bool = False,
    options: dict[str, str] = engines.CLI_OPTIONS,
    hosts: DaskHosts | None = None,
) -> PreparedCase:
    """Validate ``spec`` and choose its engine, once, before any server starts.

    ``has_metrics`` and ``tls`` describe the server the case will meet (a server axon starts
    has metrics and no TLS). ``options`` names the face's options in messages. ``hosts``
    offers the load from many hosts instead; ``processes`` then counts per host, and "auto" is
    resolved on each host's own cores.
    """
    if hosts is not None:
        spec = spec.validate()
        choice = hosts.choose(spec, has_metrics, tls, options)
        return PreparedCase(spec, choice, hosts.engine_for(choice))
    spec = spec.validate().resolved().validate()
    choice = engines.choose(
        spec.engine, spec.mode, has_metrics, options, tls=tls, on_unavailable=spec.on_unavailable, distribution=spec.distribution
    )
    return PreparedCase(spec, choice, engines.engine_for(choice, spec, options))


def run_case(
    case: PreparedCase | LoadSpec,
    target: Target,
    features: np.ndarray | Feed | None,
    reference_onnx: Path | None = None,
    dataset: dict | None = None,
    on_progress: Progress | None = None,
    client_bound_cores: float = CLIENT_BOUND_CORES,
    repeat: tuple[int, int] | None = None,
    options: dict[str, str] = engines.CLI_OPTIONS,
    hosts: DaskHosts | None = None,
) -> dict:
    """Run one load case against a ready server and return its result record.

    ``case`` comes from :func:`prepare`; a bare :class:`LoadSpec` is prepared here against
    ``target`` (with ``options`` and ``hosts``). A worker process (native: an h2load thread)
    using more than ``client_bound_cores`` of a core flags the run client-bound. ``repeat`` is
    (index, count) when the case is one of several repeats. Without ``reference_onnx`` (or
    with a path that is not a file) correctness is not checked, and the record says so, with
    the reason, under ``correctness``.
    """
    ep = target.endpoints
    if isinstance(case, LoadSpec):
        case = prepare(case, ep.metrics is not None, ep.tls, options, hosts)
    spec, engine = case.spec, case.engine
    died = target.server.death() if target.server is not None else None
    if died:  # said as what it is, not as a model that is "not ready"
        raise ServerError(f"the {target.backend} Triton axon started is gone: {died}")
    try:
        wait_ready(ep.grpc, [spec.model], MODEL_CHECK_TIMEOUT_S, ssl=ep.tls, headers=ep.headers or None, ca_file=ep.ca_file)
    except ServerError as exc:
        raise ServerError(f"model {spec.model!r} is not served at {ep.grpc}: {exc}; it serves: {served_models(ep)}") from None
    # Any model: its signature read (from the user's ONNX file or the server), its inputs built.
    settled = settle(as_feed(features), spec.model, ep, spec.rows_per_request, engine.payload_limit, reference_onnx)
    payloads, expected = settled.payloads.bodies, settled.expected
    scrape = (lambda: triton_metrics.scrape(ep.metrics, spec.model)) if ep.metrics else None
    watch = target.watch()
    with watch if watch is not None else contextlib.nullcontext():
        guard = watch.reason if watch is not None else None
        run = engine.run(Workload(spec, ep, payloads, expected, scrape, on_progress, client_bound_cores, guard=guard))
    run.info.update(requested=case.choice.requested, notice=case.choice.notice)
    unchecked = None if expected is not None else unchecked_reason(reference_onnx)
    record = _assemble(spec, target, run, unchecked, dataset, client_bound_cores, repeat)
    record.update(run.extra.get("record", {}))  # many hosts: clock sync and per-host breakdown
    record["signature"] = {**settled.record, "bytes_per_response": _response_bytes(expected), "notice": settled.notice}
    for reason in run.extra.get("incomplete", []):
        record["complete"], record["passed"] = False, False
        record["incomplete_reason"] = "; ".join(filter(None, [record["incomplete_reason"], reason]))
    record["server_memory"] = watch.summary() if watch is not None else not_watched()
    stopped = watch.reason() if watch is not None else None
    if stopped and not run.interrupted:
        # The guard's reason replaces what the engine saw of it: a load stopped by the guard
        # looks "interrupted" to the workers, a dead server "unavailable" to the client.
        seen = [r for r in (record["incomplete_reason"] or "").split("; ") if r and r not in GUARD_SYMPTOMS]
        record["complete"], record["passed"] = False, False
        record["incomplete_reason"] = "; ".join([stopped, *seen])
    if run.interrupted:
        record["complete"] = False
        record["incomplete_reason"] = "interrupted"
        record["passed"] = False
    return record


def _response_bytes(expected: list[dict] | None) -> int | None:
    """The raw output tensors' bytes in one answer, known from the local reference (None without one)."""
    if not expected:
        return None
    return int(sum(a.nbytes for a in expected[0].values()))


def unchecked_reason(reference_onnx: Path | None) -> str:
    """Why responses can't be checked: no local model to compute the expected answers."""
    if reference_onnx is None:
        return "no local model given (give the artifacts of `axon train`)"
    return f"no local model at {reference_onnx}"


def _assemble(
    spec: LoadSpec,
    target: Target,
    run: EngineRun,
    unchecked: str | None,
    dataset: dict | None,
    client_bound_cores: float,
    repeat: tuple[int, int] | None,
) -> dict:
    outcomes, n_workers = run.outcomes, len(run.outcomes)
    errors = [o["error"] for o in outcomes if "error" in o]
    good = [o for o in outcomes if "error" not in o]
    histogram = stats.merge([o["latency"] for o in good])
    lag = stats.merge([o["lag"] for o in good]) if spec.mode == "open" else None
    sent = sum(o["sent"] for o in good)
    ok = sum(o["ok"] for o in good)
    failures = add_counts(o["failures"] for o in good)
    details: dict[str, str] = {}
    for o in good:
        for code, text in (o.get("failure_details") or {}).items():
            details.setdefault(code, text)
    measured_s = max((o["measured_s"] for o in good), default=float("nan"))
    cores = [o["client_cores"] for o in good]
    cpu_s = sum(o.get("client_cpu_s", math.nan) for o in good)
    cpu_requests = sum(o.get("client_cpu_requests", 0) for o in good)
    cpu_us_per_request = cpu_s / cpu_requests * 1e6 if cpu_requests and not math.isnan(cpu_s) else None
    client_bound = any(c > client_bound_cores for c in cores if not math.isnan(c))
    # Every worker sees the same dead server: say each reason once.
    reasons = list(dict.fromkeys([o["incomplete_reason"] for o in good if o["incomplete_reason"]] + errors))
    if len(good) < n_workers and not errors:
        reasons.append("a worker did not report")
    verification = run.extra.get("verification")
    # Only what the counts vouch for is shown as answered (records.answered): the native
    # engine's HTTP-200 rows are answers only where Triton's counters say so.
    vouched = answered.vouch(verification, ok, failures, histogram.get_total_count(), complete=not reasons)
    apart = answered.rejected([o.get("rejected_latency", "") for o in good])
    if not vouched.latency_resolved:
        apart = answered.unresolved(histogram, histogram.get_total_count() - vouched.ok)
        histogram = stats.new_histogram()
    ok, failures = vouched.ok, vouched.failures
    throughput = answered.throughput(vouched, measured_s)
    verdicts: list[str] = []
    # Completions Triton's counts can't confirm are not known to be errors: "unverified" says it.
    error_rate = (sent - ok - failures.get(answered.UNCONFIRMED, 0)) / sent if sent else 1.0
    if sent == 0:
        verdicts.append("no request was measured")
    elif error_rate > spec.max_error_rate:
        said = "; ".join(f"{code}: {text}" for code, text in details.items() if code in failures)
        verdicts.append(
            f"error rate {error_rate:.2%} > {spec.max_error_rate:.2%} ({failures})"
            + (f"; the server said {said}" if said else "")
        )
    mismatches = sum(o["mismatches"] for o in good)
    if verification is not None and not verification["verified"] and not reasons:
        verdicts.append(_unverified_message(verification))
    if mismatches:
        verdicts.append(f"{mismatches} sampled responses differ from local onnxruntime")
    verdicts.extend(run.extra.get("verdicts", []))  # the engine's own (native open loop: a release tick it can't vouch for)
    schedule = None
    if lag is not None:
        lag_summary = stats.LatencySummary.of(lag)
        # The client's own bound on requests in flight, and the due requests it shed for it
        # (counted among the failures as CLIENT_OVERLOAD, so they are never mistaken for answers).
        limit = run.info.get("in_flight_limit")
        not_sent = failures.get(loadgen.CLIENT_OVERLOAD, 0) if limit is not None else None
        achieved = (sent - (not_sent or 0)) / measured_s if measured_s else 0.0
        # Requests are counted by intended send time, so the number sent follows the (random)
        # schedule; only the lag between intended and real send shows a client falling behind.
        schedule = {"lag_p50_ms": lag_summary.p50, "lag_p99_ms": lag_summary.p99, "lag_max_ms": lag_summary.max, "offered_rps": spec.rate, "sent_rps": achieved,
                    "in_flight_limit": limit, "not_sent": not_sent}  # fmt: skip
        schedule["late_fraction"] = _share_above(lag, loadgen.LATE_SEND_S * 1e6)
        # An engine that can tell the server holding requests back from its own lateness (the
        # native engine) reports the client's share of the lag: only that can say "behind".
        own = [o["client_lag"] for o in good if o.get("client_lag")]
        judged = stats.LatencySummary.of(stats.merge(own)) if own else lag_summary
        behind = judged.count > 0 and judged.p99 / 1e3 > loadgen.MAX_SCHEDULE_LAG_S
        if own:
            schedule.update(client_lag_p99_ms=judged.p99, server_held=sum(o.get("server_held", 0) for o in good))
        # The view from the actual send mixes answers and rejections as the rows do: shown only where they are answers.
        uncorrected = [o["uncorrected"] for o in good if o.get("uncorrected")] if vouched.latency_resolved else []
        if uncorrected:
            u = stats.LatencySummary.of(stats.merge(uncorrected))
            schedule["uncorrected_latency_ms"] = {"p50": u.p50, "p90": u.p90, "p99": u.p99, "max": u.max}
        schedule["behind"] = bool(behind)
        if behind:
            verdicts.append(
                f"the client fell behind its schedule (send lag p99 {judged.p99:.2f} ms > {loadgen.MAX_SCHEDULE_LAG_S * 1e3:g} ms)"
            )
    load = {
        "mode": spec.mode,
        "concurrency": spec.concurrency,
        "rate": spec.rate,
        "distribution": spec.distribution if spec.mode == "open" else None,
        "rows_per_request": spec.rows_per_request,
        "processes": spec.processes,
        "connections": run.info.get("connections"),
        "warmup_s": spec.warmup_s,
        "duration_s": spec.duration_s,
        "request_limit": spec.requests,
        "timeout_s": spec.timeout_s,
        "on_unavailable": spec.on_unavailable,
        "timeline_s": spec.timeline_s,
        "max_in_flight": spec.max_in_flight,
    }
    outages = max((o.get("outages", 0) for o in good), default=0)  # every worker sees the same outage
    server_metrics, metrics_missing = _server_metrics(run, target, outages, sent)
    correctness = {
        # Nothing was compared without a reference, whatever the engine counted as "checked".
        "checked": sum(o["checked"] for o in good) if unchecked is None else 0,
        "mismatches": mismatches,
        "enabled": unchecked is None,
        "reason": unchecked,
        "method": run.extra.get("correctness_method") or f"1 response in {spec.sample_every} checked",
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "axon_version": results.axon_version(),
        "timestamp": results.now_iso(),
        "machine": results.machine_info(),
        "git_commit": results.git_commit(),
        "server": {"backend": target.backend, "version": target.version, **target.endpoints.as_dict()},
        "model": spec.model,
        "batching": target.batching,
        "dataset": dataset,
        "engine": run.info,
        "repeat": {"index": repeat[0], "of": repeat[1]} if repeat else None,
        "load": load,
        "measured_s": measured_s,
        "requests": {
            "sent": sent,
            "ok": ok,
            "failed": sent - ok,
            "timed_out": failures.get(loadgen.TIMEOUT, 0),
            "failures": failures,
            "failure_details": details,
            "outages": outages,
            "rejected": failures.get(loadgen.REJECTED, 0),
        },
        "throughput_rps": throughput,
        "throughput_inferences_per_s": throughput * spec.rows_per_request,
        "throughput_basis": vouched.basis,
        "latency_ms": stats.LatencySummary.of(histogram).as_dict(),
        "histogram": stats.encode(histogram),
        "latency_apart": apart,
        "schedule": schedule,
        "correctness": correctness,
        "verification": verification,
        "client": {
            "cores_per_process": cores,
            "client_bound": client_bound,
            "threshold_cores": client_bound_cores,
            "cpu_us_per_request": cpu_us_per_request,
            "cpu_us_per_row": cpu_us_per_request / spec.rows_per_request if cpu_us_per_request is not None else None,
        },
        "server_metrics": server_metrics,
        "server_metrics_missing": metrics_missing,
        "timeline": _timeline(good, spec, measured_s, vouched) if spec.timeline_s else None,
        "complete": not reasons,
        "incomplete_reason": "; ".join(reasons) or None,
        "passed": not verdicts and not reasons,
        "verdicts": verdicts,
    }


def _share_above(histogram, value_us: float) -> float | None:
    """The share of a histogram's values above ``value_us`` (None when it is empty)."""
    total = histogram.get_total_count()
    if not total:
        return None
    above = sum(
        item.count_at_value_iterated_to for item in histogram.get_recorded_iterator() if item.value_iterated_to > value_us
    )
    return above / total


def _server_metrics(run: EngineRun, target: Target, outages: int = 0, sent: int = 0) -> tuple[dict | None, str | None]:
    """Triton's deltas over the window, or None and why they are missing."""
    if run.before is not None and run.after is not None:
        delta = triton_metrics.delta(run.before, run.after)
        # Counters start from zero with each server process: across a restart the difference means nothing.
        if delta.success_count < 0 or delta.execution_count < 0:
            return None, "Triton's counters went backwards during the window (the server restarted, or the model was unloaded)"
        if outages:
            return (
                None,
                f"the server or the model stopped answering {outages} time(s) during the window; a restart or an unload resets Triton's counters, so their difference means nothing",
            )
        return delta.as_dict(), None
    if target.endpoints.metrics is None:
        return None, "no metrics endpoint given (--metrics-url)"
    if run.extra.get("metrics_error"):
        return None, run.extra["metrics_error"]
    if run.interrupted:
        # Requests measured in the window mean the window had started: the end is what was missed.
        return (
            None,
            "the run was interrupted before Triton's metrics were read at the window's end"
            if sent
            else "the run was interrupted before the window's start",
        )
    return None, "not read (the run stopped before the window's end)"


def _timeline(outcomes: list[dict], spec: LoadSpec, measured_s: float, vouched: answered.Vouched) -> list[dict]:
    """The workers' slices merged: per slice of ``spec.timeline_s`` seconds, counts and latency percentiles.

    Where the run's counts vouch for no answered requests (see :mod:`axon.records.answered`),
    no slice shows them either: ``ok`` and throughput are None where Triton's counts disagreed,
    percentiles None where rows mix answers and rejections.
    """
    by_index: dict[int, list[dict]] = {}
    for o in outcomes:
        for piece in o.get("timeline") or []:
            by_index.setdefault(piece["index"], []).append(piece)
    # Every slice of the window, those in which no request was even sent (a stall) included.
    last = max([*by_index, math.ceil(round(measured_s / spec.timeline_s, 6)) - 1 if measured_s == measured_s else 0])
    slices = []
    for index in range(last + 1) if by_index else []:
        pieces = by_index.get(index, [])
        summary = stats.LatencySummary.of(stats.merge([p["latency"] for p in pieces]))
        ok = sum(p["ok"] for p in pieces)
        start = index * spec.timeline_s
        # The last slice may be shorter (a window that is not a whole number of slices, a run cut short).
        length = min(spec.timeline_s, measured_s - start) if measured_s == measured_s else spec.timeline_s
        counted = vouched.basis == answered.CLIENT
        timed = bool(ok) and vouched.latency_resolved
        slices.append(
            {
                "start_s": start,
                "duration_s": length,
                "ok": ok if counted else None,
                "failed": sum(p["failed"] for p in pieces),
                "throughput_rps": (ok / length if length > 0 else 0.0) if counted else None,
                "p50_ms": summary.p50 if timed else None,
                "p99_ms": summary.p99 if timed else None,
                "max_ms": summary.max if timed else None,
            }
        )
    return slices


def _unverified_message(v: dict) -> str:
    if "server_success" not in v:
        return f"unverified: {v.get('reason')}"
    return (
        f"unverified: Triton counted {v['server_success']:,} successes and {v['server_failures_in_window']:,} failures "
        f"while h2load completed {v['client_completed']:,} requests in the same {v['interval_s']:.2f} s (allowed difference {v['allowed_difference']:,})"
        + (
            UNCOUNTED_REJECTIONS
            if v["client_completed"] > v["server_success"] + v["server_failures_in_window"] + v["allowed_difference"]
            else ""
        )
    )


# Seen on Triton 2.51 (2026-12-07): a queue policy's rejections reach h2load as HTTP 200, and
# Triton counts neither a full queue's nor, under h2load, a timeout's. The run is then
# unverified; the python engine sees each rejection's gRPC status and counts it as REJECTED.
UNCOUNTED_REJECTIONS = "; h2load counted more than Triton answered: a server that rejects by queue policy does that (use --engine python to count rejections)"


def run_direct(
    model: str,
    onnx_path: Path,
    features: np.ndarray | Feed | None,
    rows_per_request: int = 1,
    threads: int = 1,
    duration_s: float = 2.0,
    warmup_s: float = 0.5,
    dataset: dict | None = None,
    on_progress: Progress | None = None,
    repeat: tuple[int, int] | None = None,
) -> dict:
    """The model in-process (no server), as one result record of the same schema, engine ``direct``."""
    from axon.engines.direct import MAX_DISTINCT_BATCHES
    from axon.workload.signature import from_onnx

    spec = LoadSpec(
        model, concurrency=1, duration_s=duration_s, warmup_s=warmup_s, rows_per_request=rows_per_request, engine="direct"
    ).validate()
    engine = DirectEngine(threads)
    in_process = Endpoints("in-process")
    # The same requests a server would get, as arrays: any model's inputs, from its own graph.
    feed = as_feed(features)
    settled = settle(
        replace(feed, signature=feed.signature or from_onnx(onnx_path)),
        model,
        in_process,
        rows_per_request,
        MAX_DISTINCT_BATCHES,
        None,
        keep_tensors=True,
    )
    run = engine.run(
        Workload(
            spec, in_process, [], None, on_progress=on_progress, features=settled.payloads.requests, reference_onnx=onnx_path
        )
    )
    run.info.update(requested="direct", notice=None)
    target = Target(in_process, backend="in-process", version=run.info["version"], batching=None)
    record = _assemble(
        spec, target, run, "in-process: the model is the reference itself", dataset, CLIENT_BOUND_CORES * threads, repeat
    )
    record["load"]["threads"] = threads
    record["server_memory"] = not_watched("in-process: no server")
    # In-process, the client is the whole measurement: "client-bound" (a hot client limiting a
    # server) does not apply.
    record["client"]["client_bound"] = False
    record["signature"] = {**settled.record, "bytes_per_response": None, "notice": settled.notice}
    return record


def run_path(
    path,
    spec: LoadSpec,
    target: Target,
    feeds: dict,
    references: dict,
    dataset: dict | None = None,
    on_progress: Progress | None = None,
    client_bound_cores: float = CLIENT_BOUND_CORES,
    repeat: tuple[int, int] | None = None,
    cycle_s: float | None = None,
    hosts: DaskHosts | None = None,
) -> dict:
    """A trigger path's events against a ready server, as one result record of the usual schema.

    The record's ``model`` is ``path:<name>``, its requests are events and its latency the
    event's (from its intended start). ``path`` adds each call's latency by step and model,
    each model's counts (every call of the run) held against Triton's own success counter,
    read before the first event and after the last: a mismatch makes the run unverified.
    ``feeds`` and ``references`` give each model's inputs and local ONNX file (None: unchecked).
    ``hosts``: the events offered from many hosts, each its share; their counts summed, histograms merged.
    """
    from axon.engines import events

    ep = target.endpoints
    died = target.server.death() if target.server is not None else None
    if died:
        raise ServerError(f"the {target.backend} Triton axon started is gone: {died}")
    try:
        wait_ready(ep.grpc, path.models, MODEL_CHECK_TIMEOUT_S, ssl=ep.tls, headers=ep.headers or None, ca_file=ep.ca_file)
    except ServerError as exc:
        raise ServerError(
            f"the path calls models the server at {ep.grpc} does not serve ({exc}); it serves: {served_models(ep)}"
        ) from None
    planned, signatures = [], {}
    for step in path.steps:
        calls = []
        for call in step.calls:
            settled = settle(
                as_feed(feeds.get(call.model)), call.model, ep, call.rows, MAX_DISTINCT_PATH_BODIES, references.get(call.model)
            )
            signatures[call.model] = settled.record
            calls.append(events.PlannedCall(call.model, settled.payloads.bodies, settled.expected))
        planned.append(calls)
    unchecked = sorted(
        {
            c.model
            for s in path.steps
            for c in s.calls
            if references.get(c.model) is None or not Path(references[c.model]).is_file()
        }
    )
    scrape = (lambda: {m: triton_metrics.scrape(ep.metrics, m) for m in path.models}) if ep.metrics else None
    watch = target.watch()
    client_ms = [s.client_ms for s in path.steps]
    with watch if watch is not None else contextlib.nullcontext():
        if hosts is not None:
            from axon.engines.hosts.events_host import PathLoad

            run = hosts.run_path(PathLoad(planned, client_ms, cycle_s), spec, ep, scrape, on_progress, client_bound_cores)
        else:
            run = events.run(
                planned, client_ms, spec, ep, scrape, watch.reason if watch is not None else None, on_progress, cycle_s
            )
    run.info.update(requested="events", notice=None)
    reason = f"no local model for {', '.join(unchecked)}" if unchecked else None
    record = _assemble(spec, target, run, reason, dataset, client_bound_cores, repeat)
    record.update(run.extra.get("record", {}))  # many hosts: clock sync and per-host breakdown
    for why in run.extra.get("incomplete", []):
        record["complete"], record["passed"] = False, False
        record["incomplete_reason"] = "; ".join(filter(None, [record["incomplete_reason"], why]))
    record["path"] = _path_section(path, run, signatures, record)
    if cycle_s is not None:
        record["load"]["cycle_ms"] = cycle_s * 1e3  # each client starts an event this often (paced closed loop)
    verification = record["path"]["verification"]
    if not verification["verified"] and record["complete"]:
        record["passed"] = False
        record["verdicts"].append(f"unverified: {verification['reason']}")
    record["verification"] = verification
    record["server_metrics"], record["server_metrics_missing"] = None, "a path: each model's deltas are under path.models"
    record["server_memory"] = watch.summary() if watch is not None else not_watched()
    stopped = watch.reason() if watch is not None else None
    if stopped:
        record["complete"], record["passed"], record["incomplete_reason"] = False, False, stopped
    if run.interrupted:
        record["complete"], record["passed"], record["incomplete_reason"] = False, False, "interrupted"
    return record


def check_path_served(path, target: Target) -> None:
    """Before any load: every model of the path served there, and every call's rows within its max batch.

    Batching off serves axon's models with max_batch_size 1, so an A/B of a path whose calls send
    several rows can't run its OFF side: said now, in one line, not after the ON side ran.
    """
    from axon.workload.signature import from_served

    ep = target.endpoints
    try:
        wait_ready(ep.grpc, path.models, MODEL_CHECK_TIMEOUT_S, ssl=ep.tls, headers=ep.headers or None, ca_file=ep.ca_file)
    except ServerError as exc:
        raise ServerError(
            f"the path calls models the server at {ep.grpc} does not serve ({exc}); it serves: {served_models(ep)}"
        ) from None
    for call in (c for s in path.steps for c in s.calls):
        signature = from_served(ep, call.model)
        if signature.batched and call.rows > signature.max_batch_size:
            where = f"batching {target.batching}" if target.batching else ep.grpc
            raise AxonError(
                f"--path {path.source}: {call.model} takes at most {signature.max_batch_size} row(s) a request on the server with {where}, "
                f"and the path sends {call.rows}; give that call rows <= {signature.max_batch_size}, or leave that mode out"
            )
        if not signature.batched and call.rows != 1:
            raise AxonError(f"--path {path.source}: {call.model} has no batch axis, so its calls send rows = 1, not {call.rows}")


MAX_DISTINCT_PATH_BODIES = 64  # per call: enough variety, little memory with many calls


def _path_section(path, run: EngineRun, signatures: dict, record: dict) -> dict:
    """Per call (by step) and per model: latency, counts, Triton's deltas and the counter check."""
    calls_out = []
    for (s, c), st in sorted(run.extra["path_calls"].items()):
        summary = stats.LatencySummary.of(stats.decode(st["latency"])) if st["ok"] else None
        call = path.steps[s].calls[c]
        calls_out.append(
            {
                "step": s + 1,
                "model": call.model,
                "rows": call.rows,
                "sent": st["sent"],
                "ok": st["ok"],
                "failures": st["failures"],
                "latency_ms": summary.as_dict() if summary else None,
            }
        )
    totals = run.extra["path_totals"]
    before, after = run.extra["scrapes"]
    per_event = path.calls_per_event()
    models, problems = {}, []
    for model in path.models:
        mine = totals.get(model, {})
        entry = {
            "calls_per_event": per_event[model],
            "calls_sent": mine.get("sent", 0),
            "calls_ok": mine.get("ok", 0),
            "signature": signatures.get(model),
        }
        if before is not None and after is not None:
            delta = triton_metrics.delta(before[model], after[model])
            entry["server"] = delta.as_dict()
            if delta.success_count != entry["calls_ok"]:
                problems.append(
                    f"{model}: Triton counted {delta.success_count:,} successes, the events made {entry['calls_ok']:,} successful calls"
                )
        models[model] = entry
    events_in_window = record["requests"]["ok"]
    if before is None or after is None:
        verification = {"verified": False, "reason": "no metrics endpoint to check each model's counts against (--metrics-url)"}
    else:
        verification = {
            "verified": not problems,
            "reason": "; ".join(problems) or None,
            "method": "each model's successful calls over the whole run (warm-up included) against Triton's success counter, read before the first event and after the last",
        }
    step_share = []
    total_p50 = sum(
        (max((c["latency_ms"] or {}).get("p50", 0.0) for c in calls_out if c["step"] == s + 1) for s in range(len(path.steps))),
        0.0,
    )
    for s, step in enumerate(path.steps):
        p50 = max(((c["latency_ms"] or {}).get("p50", 0.0) for c in calls_out if c["step"] == s + 1), default=0.0)
        step_share.append(
            {
                "step": s + 1,
                "client_ms": step.client_ms,
                "slowest_call_p50_ms": p50,
                "share_of_calls_p50": p50 / total_p50 if total_p50 else None,
            }
        )
    return {
        **path.as_record(),
        "events_ok_in_window": events_in_window,
        "events_ok_whole_run": run.extra["events_run_ok"],
        "calls": calls_out,
        "models": models,
        "step_latency": step_share,
        "engine_why": run.info.get("why"),
        "verification": verification,
    }
