"""The measured inputs of a sizing, read from records: a study's, a bench's, or ``axon size``'s own.

Capacity within the p99 budget comes from open-loop runs of the subject (a model, or a path as
``path:NAME``): a rate holds when at least half of its runs pass within the budget, as in the
study's capacity search (:func:`axon.study.plan.capacity_table`). Its span runs from the highest
rate that held up to the first that failed above it (the capacity lies between).

Client CPU per event, offloaded: the study's ``service`` cases (one request in flight, 1 row;
the native client where there is one, as a trigger's C++ client is), else the capacity runs
at the rate that held (a path's: its event engine). In-process: the ``direct`` cases.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from axon.errors import AxonError
from axon.records import results
from axon.study.plan import arrivals_label, capacity_table
from axon.study.sizing.arithmetic import Measured, Span

HOW_TO_MEASURE = (
    "run `axon study` (its capacity search), `axon bench --rate R ...` at a few rates, "
    "or `axon size` without RESULTS to measure one on the spot"
)


def read_runs(source: Path) -> list[dict]:
    """Every record of a study folder (its study.json), a results folder or a results file."""
    if source.is_dir():
        files = [source / "study.json"] if (source / "study.json").is_file() else sorted(source.glob("*.json"))
        if not files:
            raise AxonError(f"{source}: no study.json or results file in it; {HOW_TO_MEASURE}")
    elif source.is_file():
        files = [source]
    else:
        raise AxonError(f"{source}: no such file or folder")
    runs: list[dict] = []
    for f in files:
        kind, payload = results.read_measurements(f)
        if kind == "other":
            raise AxonError(f"{f}: not an axon results file nor a pytest-benchmark JSON")
        runs += payload["runs"] if kind == "axon" else results.benchmark_runs(payload, f)
    return runs


def subjects(runs: list[dict]) -> list[str]:
    """Every model or path with open-loop runs, in the order measured."""
    return list(dict.fromkeys(r["model"] for r in runs if r["load"]["mode"] == "open" and r.get("batching")))


def measured(runs: list[dict], subject: str, batching: str, p99_budget_ms: float | None, source: str) -> Measured:
    """The inputs of one subject under one batching mode; one line (AxonError) where they are missing."""
    mine = [r for r in runs if r["model"] == subject]
    if not mine:
        models = ", ".join(dict.fromkeys(r["model"] for r in runs)) or "none"
        raise AxonError(f"{source} holds no run of {subject} (it measured: {models}): size what it measured, or {HOW_TO_MEASURE}")
    budget = p99_budget_ms if p99_budget_ms is not None else _plan_budget(mine)
    open_runs = [r for r in mine if r["load"]["mode"] == "open" and r.get("batching") == batching]
    # A study's capacity search, else every open-loop run of the subject (a bench at a few rates).
    searched = [r for r in open_runs if (r.get("study") or {}).get("part") == "capacity"] or [
        {**r, "study": {"part": "capacity"}} for r in open_runs
    ]
    table = capacity_table(searched, budget)
    # Constant spacing first (the server's limit, not Poisson's python client); the native engine's if both.
    keys = sorted(table, key=lambda k: ("poisson" in k[2], "native" not in k[2]))
    key = next((k for k in keys if table[k]["max_rate"] is not None), None)
    if key is None:
        why = "no open-loop run of it" if not open_runs else f"no rate held p99 <= {budget:g} ms"
        raise AxonError(f"{source}: no capacity measurement of {subject} with batching {batching} ({why}); {HOW_TO_MEASURE}")
    entry = table[key]
    held = entry["max_rate"]
    searched = [r for r in searched if arrivals_label(r) == key[2]]
    at_held = [r for r in searched if r["load"]["rate"] == held]
    capacity_runs = [(r["load"]["rate"], r["latency_ms"]["p99"]) for r in searched if r["latency_ms"].get("p99") is not None]
    service, client = _service(mine, at_held)
    direct = _direct(runs, mine)
    bytes_in, bytes_out = _bytes(mine)
    return Measured(
        subject=subject,
        batching=batching,
        p99_budget_ms=budget,
        capacity_eps=Span(held, held, entry["first_fail"]),
        capacity_by=key[2],
        p99_at_capacity_ms=entry["p99_at_max"],
        p50_at_capacity_ms=statistics.median(r["latency_ms"]["p50"] for r in at_held),
        service_ms=service,
        service_client=client,
        direct_ms=direct,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        capacity_runs=sorted(capacity_runs),
        source=source,
    )


def _part(r: dict) -> str | None:
    return (r.get("study") or {}).get("part")


def _rows(r: dict) -> int:
    return r["load"].get("rows_per_request") or 1


def _plan_budget(runs: list[dict]) -> float:
    for r in runs:
        budget = ((r.get("study") or {}).get("plan") or {}).get("p99_budget_ms")
        if budget is not None:
            return float(budget)
    raise AxonError("these records carry no p99 budget (they are not a study's): give --p99-ms")


def _service(runs: list[dict], at_held: list[dict]) -> tuple[Span, str]:
    for engine in ("native", "python"):
        cpu = [
            r["client"]["cpu_us_per_request"] / 1e3
            for r in runs
            if _part(r) == "service" and _rows(r) == 1 and r["engine"]["name"] == engine and r["client"].get("cpu_us_per_request")
        ]
        if cpu:
            return Span.of(cpu), f"{engine} client, one request in flight"
    cpu = [r["client"]["cpu_us_per_request"] / 1e3 for r in at_held if r["client"].get("cpu_us_per_request")]
    if not cpu:
        raise AxonError("the records hold no client CPU per event (neither service cases nor capacity runs with it)")
    return Span.of(cpu), f"{at_held[0]['engine']['name']} client, at the capacity that held"


def _direct_ms(runs: list[dict], model: str, rows: int) -> Span | None:
    return Span.of(
        [
            r["client"]["cpu_us_per_request"] / 1e3
            for r in runs
            if r["model"] == model and _part(r) == "direct" and _rows(r) == rows and r["client"].get("cpu_us_per_request")
        ]
    )


def _direct(runs: list[dict], mine: list[dict]) -> Span | None:
    """In-process CPU per event: the model's direct cases at 1 row; a path's, summed over its calls
    (each model at its rows) plus the CPU its steps spend (``client_ms``, spent either way)."""
    steps = next(((r.get("path") or {}).get("steps") for r in mine if (r.get("path") or {}).get("steps")), None)
    if steps is None or (
        len(steps) == 1 and len(steps[0]["calls"]) == 1 and steps[0]["calls"][0]["rows"] == 1 and not steps[0]["client_ms"]
    ):
        model = steps[0]["calls"][0]["model"] if steps else mine[0]["model"]
        return _direct_ms(runs, model, 1)
    spans = [_direct_ms(runs, c["model"], c["rows"]) for s in steps for c in s["calls"]]
    if any(x is None for x in spans):
        return None
    busy = sum(s["client_ms"] for s in steps)
    return Span(busy + sum(x.value for x in spans), busy + sum(x.low for x in spans), busy + sum(x.high for x in spans))


def _bytes(runs: list[dict]) -> tuple[int | None, int | None]:
    """Tensor bytes per event each way (a path: summed over its calls); the wire adds gRPC framing."""
    for r in runs:
        models = (r.get("path") or {}).get("models")
        if models:
            sigs = [(m["calls_per_event"], m.get("signature") or {}) for m in models.values()]
            if all(s.get("bytes_per_request") is not None for _, s in sigs):
                out = [s.get("bytes_per_response") for _, s in sigs]
                return sum(n * s["bytes_per_request"] for n, s in sigs), (
                    sum(n * (s.get("bytes_per_response") or 0) for n, s in sigs) if all(o is not None for o in out) else None
                )
        sig = r.get("signature") or {}
        if sig.get("bytes_per_request") is not None and _rows(r) == 1:
            out_bytes = next(
                (
                    x["signature"].get("bytes_per_response")
                    for x in runs
                    if (x.get("signature") or {}).get("bytes_per_response") is not None and _rows(x) == 1
                ),
                None,
            )
            return sig["bytes_per_request"], out_bytes
    return None, None
