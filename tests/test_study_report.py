"""A small real study against the embedded Triton, then the report: tables and plot objects."""

from __future__ import annotations

import json
import shutil

import matplotlib
import pytest

from axon.study import report
from axon.study.plan import CAPACITY_HALVINGS, STUDY_FILE, Study, StudyPlan, arrivals_label, capacity_table, search_capacity
from axon.study.report import plots, style, tables
from tests.helpers import assert_clean_error, run_axon

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def study_dir(artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    plan = StudyPlan(
        sweep=(1, 4),
        compare_at=4,
        duration_s=0.6,
        warmup_s=0.2,
        capacity_start_rps=150.0,
        capacity_max_rps=150.0,  # one rate a search; the search's doubling and bisecting: test_search_capacity_*
        capacity_bisect_steps=1,
        p99_budget_ms=500.0,
        repeat=2,
        direct_rows=(1, 4),
        direct_duration_s=0.4,
    )
    Study(artifacts, out, plan, log=lambda s: None).run()
    report.write_report(out)
    return out


def test_search_capacity_doubles_then_bisects_and_halves_below_the_start():
    tried = []

    def holds_up_to(limit):
        def ok(rate):
            tried.append(rate)
            return rate <= limit

        return ok

    assert search_capacity(holds_up_to(500), 100, 10_000, 2) == (500, 600)  # 100, 200, 400 hold, 800 fails; 600, 500
    assert tried == [100, 200, 400, 800, 600, 500]
    assert search_capacity(holds_up_to(10**9), 100, 400, 3) == (400, None)  # never failed below the highest rate
    tried.clear()
    assert search_capacity(holds_up_to(30), 100, 400, 0) == (25, 50)  # halves below the start until a rate holds
    assert tried == [100, 50, 25]
    assert search_capacity(holds_up_to(0), 100, 400, 1) == (None, 100 / 2**CAPACITY_HALVINGS)


def test_study_records_every_part(study_dir):
    runs = json.loads((study_dir / STUDY_FILE).read_text())["runs"]
    parts = [r["study"]["part"] for r in runs]
    assert parts.count("sweep") == 8  # 2 concurrencies x 2 batching modes x 2 repeats
    assert parts.count("models") == 4  # v2 at c=4, on and off, 2 repeats (v1 is in the sweep)
    assert parts.count("capacity") >= 16  # 2 models x 2 modes x 2 arrival processes x 150/s twice (repeat 2)
    assert parts.count("direct") == 8  # 2 models x 2 rows-per-request x 2 repeats
    assert parts.count("service") == 16  # the same on the native and the python engine
    assert {r["engine"]["name"] for r in runs if r["study"]["part"] == "service"} == {"native", "python"}
    # Interleaved: ON, OFF, ON, OFF for each case, repeats numbered.
    sweep = [(r["load"]["concurrency"], r["batching"], r["repeat"]["index"]) for r in runs if r["study"]["part"] == "sweep"]
    assert sweep[:4] == [(1, "on", 0), (1, "off", 0), (1, "on", 1), (1, "off", 1)]
    closed = [r for r in runs if r["load"]["mode"] == "closed" and r["study"]["part"] != "direct"]
    assert {r["engine"]["name"] for r in closed} <= {"native", "python"}
    # Open loop: Poisson on python (h2load has no Poisson mode), constant spacing on native where h2load is.
    constant = "native" if shutil.which("h2load") else "python"
    assert all(
        r["engine"]["name"] == ("python" if r["load"]["distribution"] == "poisson" else constant)
        for r in runs
        if r["load"]["mode"] == "open"
    )
    assert all(r["dataset"]["name"] == "synthetic" for r in runs)
    table = capacity_table(runs, 500.0)
    arrivals = {f"constant ({constant})", "poisson (python)"}
    assert set(table) == {
        (m, b, a) for m in ("particle_classifier_v1", "particle_classifier_v2") for b in ("on", "off") for a in arrivals
    }
    # A 500 ms p99 budget holds at 150/s on any working server; the search records where it stopped.
    # A 0.6 s window judges the client's schedule on ~90 sends, so on a loaded machine one late
    # wake-up (> 10 ms) can fail a run: that is the client, not the server, and is excused here
    # only when every failing run at 150/s was of that kind (no error, p99 within the budget).
    for (model, batching, label), entry in table.items():
        if entry["max_rate"] is not None and entry["max_rate"] >= 150.0:
            continue
        at_start = [
            r
            for r in runs
            if r["study"]["part"] == "capacity"
            and r["model"] == model
            and r["batching"] == batching
            and arrivals_label(r) == label
            and r["load"]["rate"] == 150.0
        ]
        failing = [r for r in at_start if not r["passed"]]
        assert failing and all(
            r["schedule"]["behind"] and r["requests"]["failed"] == 0 and r["latency_ms"]["p99"] <= 500.0 for r in failing
        ), (entry, [r["verdicts"] for r in failing])


def test_report_markdown(study_dir):
    text = (study_dir / "report.md").read_text()
    for heading in (
        "Batching ON vs OFF (c=4)",
        "Concurrency sweep",
        "Models at c=4",
        "Capacity under the p99 budget",
        "Server-side breakdown",
    ):
        assert heading in text
    assert "| throughput (req/s) |" in text and "ON / OFF" in text and "interleaved repeats" in text
    assert "[" in text.split("## Concurrency sweep")[1].split("##")[0]  # median [min–max] cells
    # The sizing section stands where some capacity held (docs/sizing.md), and only there.
    runs = json.loads((study_dir / STUDY_FILE).read_text())["runs"]
    held = any(e["max_rate"] for e in capacity_table(runs, 500.0).values())
    assert ("## Sizing: trigger cores one server carries" in text) == held
    for name in plots.PLOTS.values():
        assert (study_dir / name).stat().st_size > 5000


def _labels(ax):
    return ax.get_xlabel(), ax.get_ylabel()


def test_plot_objects(study_dir):
    runs = json.loads((study_dir / STUDY_FILE).read_text())["runs"]
    figs = plots.figures(runs)
    t, lat = figs["sweep"].axes
    assert _labels(t) == ("concurrency (requests in flight)", "throughput (req/s)")
    assert _labels(lat) == ("concurrency (requests in flight)", "p99 latency (ms)")
    named = [c for c in t.containers if c.get_label().startswith("batching")]  # median line with min–max bars
    assert [c.get_label() for c in named] == ["batching on", "batching off"]
    assert list(named[0].lines[0].get_xdata()) == [1, 4] and list(t.get_xticks()) == [1, 4]
    assert "v1" in t.get_title()
    ab_t, ab_l = figs["ab"].axes
    assert ab_t.get_ylabel() == "throughput (req/s)" and ab_l.get_ylabel() == "latency (ms)"
    assert "v1" in ab_t.get_title() and ab_t.texts  # the bars carry their values
    assert [tick.get_text() for tick in ab_l.get_xticklabels()] == ["p50", "p95", "p99"]
    (cdf,) = figs["cdf"].axes
    assert _labels(cdf) == ("request latency (ms)", "fraction of requests (CDF)")
    budget_line = [line for line in cdf.get_lines() if line.get_label().startswith("p50 budget")]
    assert budget_line and budget_line[0].get_xdata()[0] == 7.0
    assert max(cdf.get_lines()[0].get_ydata()) == pytest.approx(1.0)
    from axon.study.plan import arrivals_label

    # One panel per arrival process (constant on native, Poisson on python): separate searches.
    capacity = [r for r in runs if r["study"]["part"] == "capacity"]
    panels = sorted({arrivals_label(r) for r in capacity})
    rate_axes = figs["rate"].axes
    assert [ax.get_title() for ax in rate_axes] == [f"{a} arrivals" for a in panels] and len(panels) == 2
    assert rate_axes[0].get_ylabel().startswith("p99 latency")
    for rate, arrivals in zip(rate_axes, panels):
        assert rate.get_xlabel().startswith("achieved throughput")
        joined = [ln for ln in rate.get_lines() if "batching" in ln.get_label() and "behind" not in ln.get_label()]
        assert len(joined) == 4
        # Each curve joins one point per offered rate, in order of offered rate (retries are points, not detours).
        mine = [r for r in capacity if arrivals_label(r) == arrivals]
        for line, (model, batching) in zip(joined, sorted({(r["model"], r["batching"]) for r in mine})):
            assert len(line.get_xdata()) == len(
                {r["load"]["rate"] for r in mine if (r["model"], r["batching"]) == (model, batching)}
            )
    # Fewer legend entries: one per meaning (mode, model, fell behind, budget), never one per combination.
    assert len(rate_axes[-1].get_legend().get_texts()) <= 7
    assert [line for line in cdf.get_lines() if line.get_label().startswith("p99 budget")]
    bd_on, bd_off = figs["breakdown"].axes  # one panel per batching mode, log, so ON's small bars at c <= 16 show
    assert bd_on.get_ylabel() == "server time per request (µs, log)" and bd_on.get_yscale() == "log"
    assert [ax.get_title() for ax in (bd_on, bd_off)] == ["batching ON", "batching OFF"]
    assert all(len(ax.containers) == 4 for ax in (bd_on, bd_off))
    on_off = {matplotlib.colors.to_hex(style.COLORS[m]) for m in ("on", "off")}
    assert (
        not {matplotlib.colors.to_hex(c.patches[0].get_facecolor()) for c in bd_on.containers} & on_off
    )  # components never look like ON/OFF
    assert all(p.get_height() > 0 for p in bd_on.containers[0].patches)  # every ON case's queue bar is drawn
    for fig in figs.values():
        matplotlib.pyplot.close(fig)


def test_report_cli(study_dir, tmp_path):
    done = run_axon("report", str(study_dir))
    assert done.returncode == 0 and "Concurrency sweep" in done.stdout
    assert_clean_error(run_axon("report", str(tmp_path)), "no study.json")


def test_direct_vs_service_numbers_come_from_the_records(study_dir):
    import statistics

    runs = json.loads((study_dir / STUDY_FILE).read_text())["runs"]
    rows = tables.direct_vs_service(runs)
    assert {(r["model"], r["rows"]) for r in rows} == {
        (m, k) for m in ("particle_classifier_v1", "particle_classifier_v2") for k in (1, 4)
    }
    for row in rows:
        mine = [r for r in runs if r["model"] == row["model"] and r["load"]["rows_per_request"] == row["rows"]]
        direct = [r["client"]["cpu_us_per_row"] for r in mine if r["study"]["part"] == "direct"]
        native = [r for r in mine if r["study"]["part"] == "service" and r["engine"]["name"] == "native"]
        assert row["direct_cpu_us_per_row"] == statistics.median(direct) > 0
        assert row["native_cpu_us_per_row"] == statistics.median(r["client"]["cpu_us_per_row"] for r in native) > 0
        assert row["native_p50_ms"] == statistics.median(r["latency_ms"]["p50"] for r in native)
        assert row["break_even_us_per_row"] == row["native_cpu_us_per_row"] and row["native_runs"] == 2
        # CPU per row is CPU per request over the rows each request carries.
        assert all(r["client"]["cpu_us_per_row"] == r["client"]["cpu_us_per_request"] / row["rows"] for r in native)
    text = (study_dir / "report.md").read_text()
    section = text.split("## Direct vs service")[1].split("##")[0]
    first = rows[0]
    assert f"| {first['model']} | {first['rows']} | {first['direct_cpu_us_per_row']:,.3f} |" in section
    assert section.count("- For v") == 2 and "the CPU of running the model in-process" in section


def test_direct_plot_objects(study_dir):
    runs = json.loads((study_dir / STUDY_FILE).read_text())["runs"]
    fig = plots.plot_direct(runs)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert _labels(ax) == ("rows per request", "client CPU per row (µs)")
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert [ln.get_label() for ln in ax.get_lines()] == [
            "direct (in-process, 1 thread)",
            "service, native client",
            "service, python client",
        ]
        assert list(ax.get_lines()[0].get_xdata()) == [1, 4]
    matplotlib.pyplot.close(fig)
