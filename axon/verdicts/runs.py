"""Run-level values from saved results: one point per run (or repeat), the unit of evidence.

Reads pytest-benchmark JSON (``--benchmark-json`` / ``--benchmark-autosave``; axon's record is in
each case's ``extra_info["axon"]``) and axon's own results JSON (``{"runs": [record, ...]}``).
A pytest-benchmark case measured with ``--axon-repeat N`` carries its N per-run records under
``"repeats"``; each becomes a run here. In an axon results file every repeat is its own entry,
with ``repeat: {"index": i, "of": n}``. Entries with the same label that are not repeats of one
case (a capacity search's retries, say) keep distinct keys (``label #2``), never overwrite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from axon.errors import AxonError
from axon.records import results
from axon.records.schema import case_label

# metric -> (axis label with unit, True when a larger value is worse)
METRICS: dict[str, tuple[str, bool]] = {
    "p50_ms": ("p50 latency (ms)", True),
    "p99_ms": ("p99 latency (ms)", True),
    "mean_ms": ("mean latency (ms)", True),
    "throughput_rps": ("throughput (requests/s)", False),
}


@dataclass(frozen=True)
class Run:
    """One measured run of one case, as the gate sees it."""

    case: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    when: str  # ISO time of the saved file (or of the run): orders a history
    repeat: int  # index within its repeated case; 0 for a single run
    source: str  # the file it came from; runs of one file are one CI run
    record: dict = field(repr=False, compare=False)

    def value(self, metric: str) -> float:
        return float(getattr(self, metric))


def _measured(record: dict) -> bool:
    lat = record.get("latency_ms") or {}
    values = (lat.get("p50"), lat.get("p99"), record.get("throughput_rps"))
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) and (lat.get("count") or 1) > 0


def _run(case: str, record: dict, when: str, repeat: int, source: str) -> Run:
    lat = record["latency_ms"]
    mean = lat.get("mean")
    return Run(
        case,
        float(lat["p50"]),
        float(lat["p99"]),
        float(mean if mean is not None else "nan"),
        float(record["throughput_rps"]),
        when,
        repeat,
        source,
        record,
    )


def _repeat_index(record: dict, fallback: int) -> int:
    rep = record.get("repeat")
    return int(rep["index"]) if isinstance(rep, dict) and rep.get("index") is not None else fallback


def _groups(entries: list[tuple[str, dict]]) -> list[tuple[str, list[dict]]]:
    """Group consecutive repeats of one label; anything else with a seen label gets ``label #k``."""
    groups: list[tuple[str, list[dict]]] = []
    open_group: dict[str, list[dict]] = {}
    seen: dict[str, int] = {}
    for label, record in entries:
        rep = record.get("repeat") if isinstance(record.get("repeat"), dict) else None
        current = open_group.get(label)
        if rep and current and current[-1].get("repeat") and _repeat_index(current[-1], -1) < _repeat_index(record, -1):
            current.append(record)
            continue
        seen[label] = seen.get(label, 0) + 1
        key = label if seen[label] == 1 else f"{label} #{seen[label]}"
        members = [record]
        groups.append((key, members))
        open_group[label] = members if rep else []
    return groups


def _per_run(record: dict) -> list[dict]:
    """A pytest-benchmark case's record as its per-run records (``--axon-repeat N`` keeps N under ``repeats``)."""
    repeats = record.get("repeats")
    if isinstance(repeats, list) and repeats:
        # Tag each per-run record so _groups keeps them together even without a repeat field.
        return [{**r, "repeat": r.get("repeat") or {"index": i, "of": len(repeats)}} for i, r in enumerate(repeats)]
    return [record]


def runs_of_record(case: str, record: dict, source: str) -> list[Run]:
    """The measured runs of one pytest-benchmark case's axon record (one per repeat), in repeat order."""
    records = _per_run(record)
    runs = [_run(case, r, r.get("timestamp") or "", _repeat_index(r, i), source) for i, r in enumerate(records) if _measured(r)]
    return sorted(runs, key=lambda run: run.repeat)


def load_runs(path: Path, required: bool = True) -> dict[str, list[Run]]:
    """Runs per case in one saved file.

    Parameters
    ----------
    path
        A pytest-benchmark JSON or an axon results JSON.
    required
        Raise :class:`AxonError` when the file holds no axon measurement (else return ``{}``).

    Returns
    -------
    dict[str, list[Run]]
        Case key (pytest-benchmark name, or axon's case label) to its runs in repeat order.
    """
    path = Path(path)
    kind, payload = results.read_measurements(path)
    if kind == "other":
        if not required:
            return {}
        raise AxonError(f"{path}: neither a pytest-benchmark JSON nor axon results")
    entries: list[tuple[str, dict]] = []
    if "benchmarks" in payload:
        for bench in payload.get("benchmarks") or []:
            record = (bench.get("extra_info") or {}).get("axon")
            if not isinstance(record, dict):
                continue
            entries += [(bench["name"], r) for r in _per_run(record)]
        file_time = payload.get("datetime")
    else:
        entries = [(case_label(r), r) for r in payload.get("runs") or [] if isinstance(r, dict) and r.get("load")]
        file_time = None
    cases: dict[str, list[Run]] = {}
    for key, records in _groups(entries):
        runs = [
            _run(key, r, file_time or records[0].get("timestamp") or "", _repeat_index(r, i), str(path))
            for i, r in enumerate(records)
            if _measured(r)
        ]
        if runs:
            cases[key] = sorted(runs, key=lambda run: run.repeat)
    if not cases and required:
        raise AxonError(f"{path}: no axon measurements in it")
    return cases


def load_many(paths: list[Path]) -> dict[str, list[Run]]:
    """Runs per case from many files (or folders of them), in time order, then repeat order."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(path.rglob("*.json"))
        elif path.exists():
            files.append(path)
        else:
            raise AxonError(f"{path}: no such file or folder")
    cases: dict[str, list[Run]] = {}
    for file in files:
        for key, runs in load_runs(file, required=len(files) == 1).items():
            cases.setdefault(key, []).extend(runs)
    for runs in cases.values():
        runs.sort(key=lambda r: (r.when, r.source, r.repeat))
    return cases


def newest_source(runs: list[Run]) -> str:
    """The file of the newest run: all its repeats form the "newest run" the history gate judges."""
    return runs[-1].source
