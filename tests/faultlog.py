"""What the fault tests saw, kept for docs/reliability.md (rendered by scripts/reliability_doc.py).

A test calls :func:`observe` after its assertions passed, so only outcomes that passed are
written. Nothing is written unless ``AXON_RELIABILITY_DIR`` names a folder:

    AXON_RELIABILITY_DIR=docs/reliability pytest tests/test_faults.py tests/test_tls.py
    python scripts/reliability_doc.py
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

from axon.records.atomic import write_json

ENV = "AXON_RELIABILITY_DIR"


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def summary(run: dict | None) -> dict | None:
    """The record fields the fault matrix shows."""
    if run is None:
        return None
    lat = run["latency_ms"]
    timeline = run.get("timeline") or []
    return {
        "engine": run["engine"]["name"],
        "complete": run["complete"],
        "incomplete_reason": run["incomplete_reason"],
        "passed": run["passed"],
        "sent": run["requests"]["sent"],
        "ok": run["requests"]["ok"],
        "failures": run["requests"]["failures"],
        "failure_details": run["requests"].get("failure_details") or {},
        "p99_ms": lat["p99"],
        "max_ms": lat["max"],
        "verified": (run.get("verification") or {}).get("verified"),
        "server_metrics": run["server_metrics"] is not None,
        "server_metrics_missing": run.get("server_metrics_missing"),
        "verdicts": run["verdicts"],
        "timeline_ok": [s["ok"] for s in timeline],
        "timeline_failed": [s["failed"] for s in timeline],
        "timeline_s": run["load"].get("timeline_s"),
    }


def observe(
    case: str,
    fault: str,
    expected: str,
    run: dict | None = None,
    exit_code: int | None = None,
    message: str | None = None,
    test: str | None = None,
    **extra,
) -> None:
    """Write what one fault case observed to ``$AXON_RELIABILITY_DIR/<case>.json`` (if set)."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    payload = {
        "case": case,
        "fault": fault,
        "expected": expected,
        "test": test or os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "exit_code": exit_code,
        "message": message.strip().splitlines()[-1] if message else None,  # axon's own line, the last one
        "record": summary(run),
        "observed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
        **extra,
    }
    write_json(Path(folder) / f"{case}.json", payload)
