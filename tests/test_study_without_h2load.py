"""`axon study` on a machine without h2load, faked on any machine (a PATH without it): every part
runs, on the python engine where it wanted the native one, said once; and ``--engine`` is
honoured by every part."""

from __future__ import annotations

import json

import pytest

from axon.study import report
from axon.study.plan import SERVICE_ENGINES, Study, StudyPlan
from axon.study.report import tables
from tests.helpers import assert_clean_error, run_axon

pytest_plugins = ["tests.absent"]

# The smallest study that still has every part: one concurrency, one model, one rate per search.
TINY = dict(sweep=(2,), compare_at=2, models=("v1",), duration_s=0.4, warmup_s=0.2, repeat=1, capacity_start_rps=100.0, capacity_max_rps=100.0,
            capacity_bisect_steps=0, p99_budget_ms=500.0, direct_rows=(1,), direct_duration_s=0.3)  # fmt: skip


@pytest.mark.server
def test_auto_without_h2load_runs_every_part_on_python_saying_so_once(no_h2load, artifacts, tmp_path):
    lines: list[str] = []
    runs = Study(artifacts, tmp_path, StudyPlan(**TINY), log=lines.append).run()
    parts = {r["study"]["part"] for r in runs}
    assert parts == {"sweep", "direct", "service", "capacity"}, parts
    assert {r["engine"]["name"] for r in runs if r["study"]["part"] != "direct"} == {"python"}
    assert sum(r["study"]["part"] == "service" for r in runs) == 1  # the python client's; no native one forced
    notices = [line for line in lines if line.lstrip().startswith("notice:")]
    fallback = [n for n in notices if "auto engine fell back to python: h2load not found" in n]
    assert len(fallback) == 1, notices
    assert sum("direct vs service: the native client's cases are left out" in n for n in notices) == 1, notices
    assert len(notices) == len(set(notices)), notices  # nothing said twice
    path = report.write_report(tmp_path)
    text = path.read_text()
    assert "with a python client (no native client was measured" in text


def test_engine_python_is_honoured_by_direct_vs_service(artifacts, tmp_path, monkeypatch):
    """With h2load present (faked: the lookup answers a version), --engine python still runs no native case."""
    from axon.engines import base

    monkeypatch.setattr(base, "h2load_version", lambda: "nghttp2/1.52.0")
    lines: list[str] = []
    python = Study(artifacts, tmp_path / "py", StudyPlan(**{**TINY, "engine": "python"}), log=lines.append)
    assert python.service_engines() == ("python",) and python.capacity_arrivals() == ("constant", "poisson")
    assert Study(artifacts, tmp_path / "auto", StudyPlan(**TINY)).service_engines() == SERVICE_ENGINES
    native = Study(artifacts, tmp_path / "native", StudyPlan(**{**TINY, "engine": "native"}), log=lines.append)
    assert native.service_engines() == ("native",)
    # Poisson has no native engine: --engine native leaves that search out, said once, never runs it on python.
    assert native.capacity_arrivals() == native.capacity_arrivals() == ("constant",)
    assert sum("capacity with Poisson arrivals is left out" in line for line in lines) == 1, lines


def test_cli_says_it_before_any_work(no_h2load, tmp_path):
    # auto: said at once, before the first server starts (here the missing artifacts stop it next).
    done = run_axon(
        "study", "--artifacts", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--pyproject", str(tmp_path / "no.toml")
    )
    assert "axon: notice: auto engine fell back to python: h2load not found" in done.stderr, done.stderr
    assert_clean_error(done, "no such folder")
    # native: refused in one line before any work, not after minutes of sweep.
    done = run_axon(
        "study",
        "--engine",
        "native",
        "--artifacts",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "out"),
        "--pyproject",
        str(tmp_path / "no.toml"),
    )
    assert_clean_error(done, "--engine native can't run this case: h2load not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.server
def test_bench_auto_without_h2load_falls_back_saying_so_once(no_h2load, artifacts, server_v1, tmp_path):
    """README: `auto` falls back to python where h2load is missing, and says so."""
    ep = server_v1.endpoints
    out = tmp_path / "run.json"
    done = run_axon("bench", "--url", ep.grpc, "--metrics-url", ep.metrics, "--artifacts", str(artifacts), "--concurrency", "2",
                    "--duration", "0.4", "--warmup", "0.2", "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.count("auto engine fell back to python: h2load not found") == 1, done.stderr
    (record,) = json.loads(out.read_text())["runs"]
    assert record["engine"]["name"] == "python" and "h2load not found" in record["engine"]["notice"]


def test_direct_sentence_names_the_client_it_measured():
    """Whichever client is missing (no h2load, or --engine native), the sentence judges by the one measured and says so."""
    rows = [{"model": "particle_classifier_v1", "rows": n, "direct_cpu_us_per_row": d, "native_cpu_us_per_row": None, "python_cpu_us_per_row": s}
            for n, d, s in ((1, 5.0, 80.0), (16, 1.0, 0.5))]  # fmt: skip
    (python_only,) = tables.direct_sentences(rows)
    assert "with a python client (no native client was measured" in python_only and "from 16 rows per request on" in python_only
    (native_only,) = tables.direct_sentences(
        [{**r, "native_cpu_us_per_row": r["python_cpu_us_per_row"], "python_cpu_us_per_row": None} for r in rows]
    )
    assert "with a native client (no Python client was measured: --engine native)" in native_only and "–" not in native_only
