"""The soak: v1, batching on, c=64 for minutes; errors, memory (client and server) and drift.

    pytest benchmarks -m soak --axon-soak-minutes 10 --axon-soak-out docs/soak

Not in the default run (benchmarks/conftest.py deselects it unless ``-m`` names ``soak``).
It passes when there are 0 errors, the RSS of the client and of the server (tritonserver plus
its python-backend stubs) grows less than 5% after the first slice (a minute), and the last
slice's throughput is within 20% of the first's. It writes soak.json, soak.png and soak.md.

The python engine carries the soak: the native engine keeps one log row per request and parses
it at the end (12 million rows for 10 minutes at 20k req/s), which is no way to hold a load for
long. See benchmarks/soak.py for why one long run with per-minute slices, not 1-minute runs.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import pytest

from axon.case import Target, run_case
from axon.engines.loadgen import LoadSpec
from axon.engines.payloads import load_rows
from axon.records import results
from axon.records.atomic import write_json
from benchmarks import soak

MODEL = "particle_classifier_v1"
CONCURRENCY = 64


@pytest.fixture
def soak_settings(pytestconfig, tmp_path) -> dict:
    opt = pytestconfig.getoption
    minutes, slice_s, sample_s = opt("--axon-soak-minutes"), opt("--axon-soak-slice-s"), opt("--axon-soak-sample-s")
    if not (minutes > 0 and slice_s > 0 and sample_s > 0):
        raise pytest.UsageError("--axon-soak-minutes, --axon-soak-slice-s and --axon-soak-sample-s must be > 0")
    duration = minutes * 60
    if duration < 2 * slice_s or abs(duration / slice_s - round(duration / slice_s)) > 1e-9:
        raise pytest.UsageError(f"the soak ({duration:g} s) must be a whole number of slices ({slice_s:g} s), at least 2")
    out = Path(opt("--axon-soak-out")) if opt("--axon-soak-out") else tmp_path / "soak"
    out.mkdir(parents=True, exist_ok=True)
    return {"minutes": minutes, "duration_s": duration, "slice_s": slice_s, "sample_s": sample_s, "out": out}


@pytest.mark.soak
def test_soak(request, axon_servers, axon_artifacts, axon_settings, soak_settings):
    s = soak_settings
    server = axon_servers.get("on")
    features, dataset = load_rows(axon_artifacts)
    target = Target(server.endpoints, server.backend, getattr(server, "version", None), "on")
    spec = LoadSpec(MODEL, concurrency=CONCURRENCY, duration_s=s["duration_s"], warmup_s=axon_settings.warmup_s, processes=axon_settings.processes,
                    engine="python", timeline_s=s["slice_s"], max_error_rate=0.0)  # fmt: skip
    window: dict = {}

    def on_progress(elapsed: float, sent: int, p99_ms: float) -> None:
        window.setdefault("start_mono", time.monotonic() - elapsed)  # when the window opened, on the sampler's clock

    with soak.RssSampler(getattr(server, "pid", None), s["sample_s"]) as sampler:
        record = run_case(
            spec, target, features, axon_artifacts / "models" / MODEL / "model.onnx", dataset, on_progress=on_progress
        )
    start = window.get("start_mono", sampler.samples[0]["t_mono"])
    samples = [{**{k: v for k, v in x.items() if k != "t_mono"}, "t_s": x["t_mono"] - start} for x in sampler.samples]
    checks = soak.criteria(record, samples, s["slice_s"])
    summary = {
        "model": MODEL,
        "batching": "on",
        "concurrency": CONCURRENCY,
        "engine": record["engine"]["name"],
        "minutes": s["minutes"],
        "slice_s": s["slice_s"],
        "sample_s": s["sample_s"],
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.node()}, {os.cpu_count()} cores, {record['machine']['cpu']}",
        "commit": results.git_commit(),
        "command": "pytest " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if "pytest" in sys.argv[0]
        else "pytest benchmarks -m soak",
        "passed": all(c["passed"] for c in checks),
        "throughput_rps": record["throughput_rps"],
        "p99_ms": record["latency_ms"]["p99"],
        "failed": record["requests"]["failed"],
        "criteria": checks,
        "timeline": record["timeline"],
        "samples": samples,
        "plot": "soak.png",
        "server_backend": record["server"]["backend"],
    }
    record_light = {k: v for k, v in record.items() if k != "histogram"}
    write_json(s["out"] / "soak.json", {"summary": summary, "record": record_light})
    soak.plot(summary, s["out"] / "soak.png")
    (s["out"] / "soak.md").write_text(soak.markdown(summary))
    request.config._axon_notes.append(f"soak: {'PASS' if summary['passed'] else 'FAIL'}; table, plot and JSON in {s['out']}")
    failing = [f"{c['name']}: {c['value']} (limit {c['limit']})" for c in checks if not c["passed"]]
    assert not failing, "soak failed: " + "; ".join(failing) + f" (see {s['out'] / 'soak.md'})"
