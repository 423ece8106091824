"""The regression gate on recorded data: runs, not requests, are the evidence.

tests/data/history_noise holds 12 real pytest-benchmark autosave files of one case
(test_closed_loop[v1-batching-on-c16], unchanged build, 3 s windows, python engine), recorded
back to back on our shared 2-core machine while other work ran on it. Their run-to-run spread,
measured (``python scripts/gate_calibration.py tests/data/history_noise``):

- p50: -7.8% .. +55.7% around the median, robust sd (MAD) of the logs 10.6%;
- p99: -21.0% .. +92.8%, robust sd 30.9%;
- throughput: -37.9% .. +9.6%, robust sd 11.7%.

That is more than the +-10% the gate is specified for: one run in four is 25-65% slow. The tests
therefore run each check twice: on the recorded values, and on the recorded deviations from the
median compressed to at most +-10% (same order, same shape, smaller; ``compressed``). Measured:

- history gate, every prefix as the newest run, 3 metrics: 0 false alarms at either noise level;
- history gate, 15% step injected from run k on (k = 5..9), +-10% noise: flagged 1-2 runs after
  the first slow run (by the 2nd or 3rd slow run); at the recorded noise most steps stay hidden;
- two-sample compare, all 18,480 3-vs-3 splits: false alarms 0.21% (p50), 0.29% (p99), 0.25%
  (throughput) at the recorded noise; 0%, 0.06%, 0% at +-10%. A 15% step in NEW is confirmed in
  23% (p50) of splits at +-10% noise with alpha 0.01 (83% with --alpha 0.05).
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import ruptures

from axon.errors import AxonError
from axon.verdicts import context, edivisive, gate, history, plot, runs
from scripts.gate_calibration import METRICS, compressed, first_detection, prefix_alarms, scaled, spread
from tests.helpers import assert_clean_error, run_axon

DATA = Path(__file__).parent / "data"
NOISE_DIR = DATA / "history_noise"
NOISE_FILES = sorted(NOISE_DIR.rglob("*.json"))
CASE = "test_closed_loop[v1-batching-on-c16]"
# A seeded sample (the same splits every run); 500 of them hold a false-alarm rate of 1%, twice
# the limit, to 5 expected alarms against the 2 allowed. scripts/gate_calibration.py runs all 18,480.
SPLITS_SAMPLED = 500
MAX_FALSE_ALARM_RATE = 0.005


@pytest.fixture(scope="module")
def series() -> list[runs.Run]:
    ((case, data),) = runs.load_many([NOISE_DIR]).items()
    assert case == CASE
    return data


def test_recorded_history_is_real_and_noisy(series):
    assert len(NOISE_FILES) == len(series) == 12
    assert [r.when for r in series] == sorted(r.when for r in series)
    lo, hi, mad = spread(series)["p50_ms"]
    assert (
        lo == pytest.approx(-0.078, abs=0.001)
        and hi == pytest.approx(0.557, abs=0.001)
        and mad == pytest.approx(0.106, abs=0.001)
    )
    for metric, (lo, hi, _) in spread(compressed(series)).items():
        assert max(-np.log1p(lo), np.log1p(hi)) == pytest.approx(np.log1p(0.10), abs=1e-3), metric  # +10% or -9.1%


@pytest.mark.parametrize("noise", ["recorded", "compressed"])
def test_history_gate_raises_no_false_alarm(series, noise):
    data = series if noise == "recorded" else compressed(series)
    for metric in METRICS:
        assert prefix_alarms(data, metric) == [], metric


@pytest.mark.parametrize("metric", METRICS)
def test_history_gate_flags_a_step_within_two_runs(series, metric):
    """15% slower (throughput 15% lower) from run k on, at +-10% noise: flagged by the 3rd slow run."""
    data = compressed(series)
    for k in range(5, 10):
        delay = first_detection(data, metric, k)
        assert delay is not None and delay <= 2, (k, delay)
        stepped = scaled(data, k, 1.15)
        # Once flagged, the newest run stays in the worse segment: the gate keeps failing.
        assert history.judge_history(CASE, stepped, metric).regression


def test_a_single_slow_run_is_an_outlier_not_a_segment(series):
    data = compressed(series)
    slow_newest = scaled(data, len(data) - 1, 1.5)
    verdict = history.judge_history(CASE, slow_newest, "p50_ms")
    assert not verdict.regression


def _sampled_splits(n: int, count: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    everything = [
        (o, m)
        for o in itertools.combinations(range(n), 3)
        for m in itertools.combinations([i for i in range(n) if i not in o], 3)
    ]
    assert len(everything) == 18_480
    return random.Random(0).sample(everything, count)


@pytest.mark.parametrize("noise", ["recorded", "compressed"])
def test_two_sample_false_alarm_rate_on_3_vs_3_splits(series, noise):
    """Measured over all 18,480 splits by scripts/gate_calibration.py; a seeded sample here."""
    data = series if noise == "recorded" else compressed(series)
    for metric in METRICS:
        alarms = [
            gate.judge(CASE, [data[i] for i in old], [data[i] for i in new], metric).regression
            for old, new in _sampled_splits(len(data), SPLITS_SAMPLED)
        ]
        assert sum(alarms) / len(alarms) <= MAX_FALSE_ALARM_RATE, (metric, sum(alarms))
        if noise == "compressed" and metric != "p99_ms":
            assert sum(alarms) == 0, metric


def test_two_sample_catches_a_clear_regression(series):
    data = compressed(series)
    later = [data[i] for i in (5, 7, 9)]
    old, new = data[:3], scaled(later, 0, 1.3)
    verdict = gate.judge(CASE, old, new, "p50_ms")
    assert verdict.regression and verdict.verdict == "REGRESSION" and verdict.method == gate.WELCH
    geo = np.exp(np.mean(np.log([r.p50_ms for r in later])) - np.mean(np.log([r.p50_ms for r in old])))
    assert verdict.change == pytest.approx(1.3 * geo - 1)
    back = gate.judge(CASE, new, old, "p50_ms")
    assert back.verdict == "improved" and not back.regression
    assert gate.judge(CASE, old, new, "throughput_rps").regression


def test_single_runs_are_never_a_significant_regression(series):
    verdicts = [gate.judge(CASE, [a], [b], metric) for a, b in itertools.permutations(series, 2) for metric in METRICS]
    assert all(v.p_value is None and not v.regression and v.method == gate.THRESHOLD_ONLY for v in verdicts)
    assert {"over threshold (unconfirmed)", "within threshold"} <= {v.verdict for v in verdicts}
    assert gate.judge(CASE, [series[0]], [series[4]], "p50_ms", single_run_fails=True).regression


def test_one_run_against_many_uses_their_spread(series):
    data = compressed(series)
    verdict = gate.judge(CASE, data[:6], [data[6]], "p50_ms")
    assert verdict.method == gate.PREDICTION and verdict.p_value is not None and not verdict.regression


def test_cli_single_runs_warn_and_pass():
    done = run_axon("compare", str(NOISE_FILES[0]), str(NOISE_FILES[4]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert gate.SINGLE_RUN_NOTE in done.stdout and "over threshold (unconfirmed)" in done.stdout
    assert "REGRESSION" not in done.stdout and "significant" not in done.stdout.split("note:")[0].split("\n", 3)[-1]


def _bench_file(path: Path, records: list[dict], name: str = CASE, when: str = "2026-11-29T03:00:00+00:00") -> Path:
    """A pytest-benchmark JSON whose case carries ``records`` as --axon-repeat does."""
    template = json.loads(NOISE_FILES[0].read_text())
    bench = copy.deepcopy(template["benchmarks"][0])
    bench["name"] = name
    pooled = copy.deepcopy(records[0])
    pooled["repeats"] = [{**r, "repeat": {"index": i, "of": len(records)}} for i, r in enumerate(records)]
    bench["extra_info"]["axon"] = pooled if len(records) > 1 else records[0]
    template["benchmarks"] = [bench]
    template["datetime"] = when
    path.write_text(json.dumps(template))
    return path


def _scaled_record(record: dict, factor: float) -> dict:
    out = copy.deepcopy(record)
    for key in ("p50", "p99", "mean"):
        out["latency_ms"][key] *= factor
    out["throughput_rps"] /= factor
    return out


def test_repeats_are_runs(tmp_path, series):
    records = [r.record for r in compressed(series)]
    path = _bench_file(tmp_path / "r.json", [r.record for r in series[:3]])
    loaded = runs.load_runs(path)[CASE]
    assert [r.repeat for r in loaded] == [0, 1, 2] and [r.p50_ms for r in loaded] == [r.p50_ms for r in series[:3]]
    old = _bench_file(tmp_path / "old.json", [r.record for r in series[:3]])
    slower = _bench_file(tmp_path / "new.json", [_scaled_record(series[i].record, 1.3) for i in (3, 5, 7)])
    done = run_axon("compare", str(old), str(slower))
    assert done.returncode == 1 and "REGRESSION" in done.stdout and gate.WELCH in done.stdout, done.stdout + done.stderr
    same = _bench_file(tmp_path / "same.json", [series[i].record for i in (3, 5, 7)])
    done = run_axon("compare", str(old), str(same), "--json")
    payload = json.loads(done.stdout)
    assert done.returncode == 0 and payload["regressions"] == 0 and payload["verdicts"][0]["p_value"] > gate.DEFAULT_ALPHA
    assert len(records) == 12


def test_axon_results_repeats_and_same_label_retries(tmp_path):
    recorded = json.loads((DATA / "recorded_run.json").read_text())
    reps = [{**_scaled_record(recorded, f), "repeat": {"index": i, "of": 3}} for i, f in enumerate((1.0, 1.02, 0.99))]
    retries = [_scaled_record(recorded, 1.5), _scaled_record(recorded, 1.6)]  # no repeat field: a capacity retry, say
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": 1, "runs": [*reps, *retries]}))
    cases = runs.load_runs(path)
    label = next(iter(cases))
    assert list(cases) == [label, f"{label} #2", f"{label} #3"]
    assert len(cases[label]) == 3 and len(cases[f"{label} #2"]) == 1
    assert cases[f"{label} #3"][0].p50_ms == pytest.approx(recorded["latency_ms"]["p50"] * 1.6)


def test_context_mismatch_warns_and_strict_refuses(tmp_path, series):
    old = _bench_file(tmp_path / "old.json", [r.record for r in series[:3]])
    changed = []
    for r in series[3:6]:
        rec = copy.deepcopy(r.record)
        rec["machine"]["cores"] = 16
        rec["engine"] = {"name": "native", "tool": "h2load"}
        changed.append(rec)
    new = _bench_file(tmp_path / "new.json", changed)
    done = run_axon("compare", str(old), str(new))
    assert done.returncode == 0 and "warning:" in done.stdout and "cores differs: 2 (old) vs 16 (new)" in done.stdout, done.stdout
    assert "engine" not in done.stdout  # the old records have no engine: not compared
    assert_clean_error(run_axon("compare", str(old), str(new), "--strict"), "context differs", "--strict")
    lines = context.changes_over(CASE, [("a", series[0].record), ("b", changed[0])])
    assert lines == [f"{CASE}: cores changes from 2 to 16 at b"]


def _storage(tmp_path: Path, slow_runs: int, factor: float = 1.5) -> Path:
    """The recorded history plus ``slow_runs`` new files of 3 repeats, made ``factor`` worse."""
    storage = tmp_path / ".benchmarks"
    shutil.copytree(NOISE_DIR, storage)
    base = [json.loads(f.read_text())["benchmarks"][0]["extra_info"]["axon"] for f in NOISE_FILES]
    for j in range(slow_runs):
        records = [_scaled_record(base[(3 * j + i) % len(base)], factor) for i in range(3)]
        _bench_file(storage / "Linux-CPython-3.11-64bit" / f"{13 + j:04d}_new.json", records, when=f"2026-11-29T04:0{j}:00+00:00")
    return storage


def test_history_cli(tmp_path):
    storage = _storage(tmp_path, 0)
    done = run_axon("compare", "--storage", str(storage))
    assert done.returncode == 0 and "no regression in the newest run" in done.stdout, done.stdout + done.stderr
    assert "E-divisive" in done.stdout
    # The newest column is the newest run itself, beside its segment's median.
    from axon.verdicts import runs as saved_runs

    (case_runs,) = saved_runs.load_many([storage]).values()
    newest_file = case_runs[-1].source
    newest = float(np.median([r.value("p50_ms") for r in case_runs if r.source == newest_file]))
    row = next(line for line in done.stdout.splitlines() if line.startswith("test_closed_loop"))
    assert row.split()[5] == f"{newest:.4g}" != row.split()[4], (row, newest)
    # Two runs are too few to judge: it says so, never "no regression".
    short = tmp_path / "short"
    short.mkdir()
    for f in sorted(storage.rglob("*.json"))[:2]:
        shutil.copy(f, short / f.name)
    done = run_axon("compare", "--storage", str(short))
    assert done.returncode == 0 and "not judged" in done.stdout and "no regression" not in done.stdout, done.stdout + done.stderr
    # One CI run of 3 repeats, 50% slower: one point (its repeats share one minute of the
    # machine), so it cannot open a segment on its own. On this very noisy recorded history (some
    # runs 25-65% slow) it takes three slow CI runs; at +-10% noise two (test above).
    done = run_axon("compare", "--storage", str(_storage(tmp_path / "one", 1)))
    assert done.returncode == 0 and "no regression in the newest run" in done.stdout, done.stdout + done.stderr
    storage = _storage(tmp_path / "slow", 3)
    plots = tmp_path / "plots"
    done = run_axon("compare", "--storage", str(storage), "--plot-dir", str(plots))
    assert done.returncode == 1 and "REGRESSION since run 1" in done.stdout and "of 15" in done.stdout, done.stdout + done.stderr
    (png,) = plots.glob("*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    done = run_axon("compare", "--storage", str(storage), "--metric", "throughput_rps", "--json")
    payload = json.loads(done.stdout)
    assert done.returncode == 1 and payload["mode"] == "history" and payload["verdicts"][0]["change_points"][-1]["index"] >= 10


def test_history_plot_objects(series):
    data = scaled(compressed(series), 8, 1.15)
    verdict = history.judge_history(CASE, data, "p50_ms", threshold=0.10)
    assert verdict.regression and [c.index for c in verdict.change_points] == [8]
    fig = plot.plot_history(verdict, 0.10)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "run (oldest to newest)" and ax.get_ylabel() == "p50 latency (ms)"
    cps = [ln for ln in ax.get_lines() if ln.get_label().lstrip("_") == plot.CHANGE_POINT_LABEL]
    assert len(cps) == 1 and cps[0].get_xdata()[0] == 8.5
    (band,) = ax.patches
    y0, y1 = band.get_extents().transformed(ax.transData.inverted()).intervaly
    assert y0 == pytest.approx(verdict.previous_level * 0.9, rel=1e-3) and y1 == pytest.approx(
        verdict.previous_level * 1.1, rel=1e-3
    )
    assert "previous segment median ± 10%" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


@pytest.mark.parametrize("metric", ["p50_ms", "throughput_rps"])
def test_edivisive_finds_the_injected_step_where_ruptures_does(series, metric):
    """On the recorded noise (compressed to +-10%), E-divisive places a 15% step at its run.

    Cross-check: ruptures' least-squares binary segmentation (every split allowed: jump=1; its
    default jump=5 only tries every 5th run) puts the best single split at the same run. Both are
    off by one at k=5 only, where the slowest recorded run sits just before the step.
    """
    for k in range(3, 11):
        logs = np.log([r.value(metric) for r in scaled(compressed(series), k, 1.15)])
        (cp,) = edivisive.change_points(logs, alpha=0.05)
        assert cp.index == (4 if k == 5 else k) and cp.p_value < 0.05, (k, cp)
        assert ruptures.Binseg(model="l2", min_size=edivisive.MIN_SEGMENT, jump=1).fit(logs).predict(n_bkps=1) == [
            cp.index,
            len(logs),
        ]
        assert edivisive.change_points(logs, alpha=0.05) == [cp]  # a fixed seed: the same verdict every time
    assert edivisive.change_points(np.ones(10), alpha=0.05) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["missing.json", "other.json"], "no such file"),
        (["--storage", "nowhere"], "no such folder"),
        (["--threshold", "2", "a", "b"], "--threshold must be between 0 and 1"),
        (["--alpha", "x", "a", "b"], "--alpha must be a number"),
        (["only-one.json"], "give two result files"),
    ],
)
def test_cli_errors(args, fragment):
    assert_clean_error(run_axon("compare", *args), fragment)


def test_cli_errors_on_files(tmp_path):
    (tmp_path / "plain.json").write_text('{"hello": 1}')
    assert_clean_error(
        run_axon("compare", str(tmp_path / "plain.json"), str(NOISE_FILES[0])), "neither a pytest-benchmark JSON nor axon results"
    )
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(NOISE_FILES[0], one)
    assert_clean_error(run_axon("compare", "--storage", str(one)), "need at least two saved runs")
    with pytest.raises(AxonError, match="no axon measurements"):
        runs.load_runs(_bench_file(tmp_path / "empty.json", [{"latency_ms": {}}]))
