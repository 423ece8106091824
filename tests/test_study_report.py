"""A small real study against the embedded Triton, then the report: tables and plot objects."""

from __future__ import annotations

import json

import matplotlib
import pytest

from axon import report
from axon.study import STUDY_FILE, Study, StudyPlan, capacity_table
from tests.helpers import assert_clean_error, run_axon

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def study_dir(artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    plan = StudyPlan(sweep=(1, 4), compare_at=4, duration_s=0.6, warmup_s=0.2, capacity_start_rps=150.0, capacity_max_rps=300.0, capacity_bisect_steps=1, p99_budget_ms=500.0)
    Study(artifacts, out, plan, log=lambda s: None).run()
    report.write_report(out)
    return out


def test_study_records_every_part(study_dir):
    runs = json.loads((study_dir / STUDY_FILE).read_text())["runs"]
    parts = [r["study"]["part"] for r in runs]
    assert parts.count("sweep") == 4  # 2 concurrencies x 2 batching modes
    assert parts.count("models") == 2  # v2 at c=4, on and off (v1 is in the sweep)
    assert parts.count("capacity") >= 8  # 2 models x 2 modes x (150/s, 300/s at least)
    assert all(r["dataset"]["name"] == "synthetic" for r in runs)
    table = capacity_table(runs, 500.0)
    assert set(table) == {(m, b) for m in ("particle_classifier_v1", "particle_classifier_v2") for b in ("on", "off")}
    # A 500 ms p99 budget holds at 150/s on any working server; the search records where it stopped.
    assert all(e["max_rate"] is not None and e["max_rate"] >= 150.0 for e in table.values()), table


def test_report_markdown(study_dir):
    text = (study_dir / "report.md").read_text()
    for heading in ("Batching ON vs OFF (c=4)", "Concurrency sweep", "Models at c=4", "Capacity under the p99 budget", "Server-side breakdown"):
        assert heading in text
    assert "| throughput (req/s) |" in text and "ON / OFF" in text
    for name in report.PLOTS.values():
        assert (study_dir / name).stat().st_size > 5000


def _labels(ax):
    return ax.get_xlabel(), ax.get_ylabel()


def test_plot_objects(study_dir):
    runs = json.loads((study_dir / STUDY_FILE).read_text())["runs"]
    figs = report.figures(runs)
    t, lat = figs["sweep"].axes
    assert _labels(t) == ("concurrency (requests in flight)", "throughput (inferences/s)")
    assert _labels(lat) == ("concurrency (requests in flight)", "p99 latency (ms)")
    assert [line.get_label() for line in t.get_lines()] == ["batching on", "batching off"]
    assert list(t.get_lines()[0].get_xdata()) == [1, 4]
    ab_t, ab_l = figs["ab"].axes
    assert ab_t.get_ylabel() == "throughput (inferences/s)" and ab_l.get_ylabel() == "latency (ms)"
    assert [tick.get_text() for tick in ab_l.get_xticklabels()] == ["p50", "p95", "p99"]
    (cdf,) = figs["cdf"].axes
    assert _labels(cdf) == ("request latency (ms)", "fraction of requests (CDF)")
    budget_line = [line for line in cdf.get_lines() if line.get_label().startswith("budget")]
    assert budget_line and budget_line[0].get_xdata()[0] == 7.0
    assert max(cdf.get_lines()[0].get_ydata()) == pytest.approx(1.0)
    (rate,) = figs["rate"].axes
    assert rate.get_xlabel().startswith("achieved throughput") and rate.get_ylabel().startswith("p99 latency")
    assert len([ln for ln in rate.get_lines() if "batching" in ln.get_label()]) == 4
    (bd,) = figs["breakdown"].axes
    assert bd.get_ylabel() == "server time per request (µs)" and len(bd.containers) == 4
    for fig in figs.values():
        matplotlib.pyplot.close(fig)


def test_report_cli(study_dir, tmp_path):
    done = run_axon("report", str(study_dir))
    assert done.returncode == 0 and "Concurrency sweep" in done.stdout
    assert_clean_error(run_axon("report", str(tmp_path)), "no study.json")
