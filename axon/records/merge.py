"""`axon merge`: runs of one case measured side by side on several hosts, merged exactly.

Latencies merge through the HDR histograms (exact, not an average of percentiles), counts and
throughputs add up over the common window. Runs of different cases, or runs whose windows did
not overlap, are refused: their sum would describe no load that ever ran.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from axon.errors import AxonError
from axon.records import results
from axon.records.repeats import case_key

# Clocks of different hosts, and the moments each host finished writing its record, differ
# by a few seconds; runs further apart than one window plus this did not run side by side.
SIDE_BY_SIDE_SLACK_S = 10.0


def _key(record: dict) -> str:
    repeat = record.get("repeat")
    return case_key(record) + (f", repeat {repeat['index'] + 1}" if repeat else "")


def _by_case(path: Path, runs: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in runs:
        key = _key(r)
        if key in out:
            raise AxonError(f"{path} holds the case {key!r} twice; merge takes one run of a case per host")
        out[key] = r
    return out


def _check_side_by_side(key: str, runs: list[dict]) -> None:
    stamps = [dt.datetime.fromisoformat(r["timestamp"]) for r in runs]
    apart = (max(stamps) - min(stamps)).total_seconds()
    window = runs[0]["load"]["warmup_s"] + runs[0]["load"]["duration_s"]
    if apart > window + SIDE_BY_SIDE_SLACK_S:
        raise AxonError(
            f"runs of {key!r} ended {apart:.0f} s apart, more than one run ({window:g} s) plus {SIDE_BY_SIDE_SLACK_S:g} s: "
            "they did not run side by side, and their throughputs would not add up"
        )


def merge_case(runs: list[dict], sources: list[str]) -> dict:
    """One record for one case from several hosts: the first host's record with every
    measured quantity replaced by the merged one, and ``merged`` saying what went in."""
    core = results.merge_runs(runs)
    first = runs[0]
    reasons = [r["incomplete_reason"] for r in runs if r["incomplete_reason"]]
    return {
        **first,
        "measured_s": max(r["measured_s"] for r in runs),
        "requests": {**core["requests"], "timed_out": sum(r["requests"]["timed_out"] for r in runs)},
        "throughput_rps": core["throughput_rps"],
        "throughput_inferences_per_s": sum(r["throughput_inferences_per_s"] for r in runs),
        "latency_ms": core["latency_ms"],
        "histogram": core["histogram"],
        "correctness": {
            **first["correctness"],
            "checked": sum(r["correctness"]["checked"] for r in runs),
            "mismatches": sum(r["correctness"]["mismatches"] for r in runs),
            "enabled": all(r["correctness"]["enabled"] for r in runs),
        },
        "client": {
            **first["client"],
            "cores_per_process": [c for r in runs for c in r["client"]["cores_per_process"]],
            "client_bound": any(r["client"]["client_bound"] for r in runs),
        },
        # Each host scraped the same server over about the same window, so each delta already
        # holds every host's traffic: adding them would count it once per host. Kept per host.
        "server_metrics": None,
        "complete": all(r["complete"] for r in runs),
        "incomplete_reason": "; ".join(dict.fromkeys(reasons)) or None,
        "passed": all(r["passed"] for r in runs),
        "verdicts": list(dict.fromkeys(v for r in runs for v in r["verdicts"])),
        "merged": {
            "from": len(runs),
            "sources": sources,
            "hosts": [r["machine"]["hostname"] for r in runs],
            "timestamps": [r["timestamp"] for r in runs],
            "throughput_rps": [r["throughput_rps"] for r in runs],
            "server_metrics": [r.get("server_metrics") for r in runs],
        },
    }


def merge_files(paths: list[Path]) -> list[dict]:
    """Merge the same cases from several results files (one per host), case by case.

    Every file must hold the same cases (model, batching, load, repeat), one run of each.
    """
    if len(paths) < 2:
        raise AxonError("give two or more results files to merge (one per host)")
    files = [(Path(p), _by_case(Path(p), results.read_results(p))) for p in paths]
    first_path, first = files[0]
    for path, cases in files[1:]:
        if set(cases) != set(first):
            only_here = sorted(set(cases) - set(first))
            only_there = sorted(set(first) - set(cases))
            what = f"{path} has {only_here[0]!r}" if only_here else f"{first_path} has {only_there[0]!r}"
            raise AxonError(f"runs of different cases don't merge: {what}, which the other file lacks")
    merged = []
    for key in first:
        runs = [cases[key] for _, cases in files]
        _check_side_by_side(key, runs)
        merged.append(merge_case(runs, [str(p) for p, _ in files]))
    return merged
