"""Gate power: every verdict says the smallest change its evidence could have told from noise.

On the recorded history (tests/data/history_noise, 12 runs of unchanged code), with its
deviations from the median stretched or shrunk to a stated bound (scripts/gate_calibration.py's
``compressed``). The stated size is checked against the test itself: a change just over it is
found, one just under it is not.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from axon.verdicts import gate, history, runs
from scripts.gate_calibration import compressed, scaled
from tests.helpers import run_axon

NOISE_DIR = Path(__file__).parent / "data" / "history_noise"
CASE = "test_closed_loop[v1-batching-on-c16]"


@pytest.fixture(scope="module")
def series() -> list[runs.Run]:
    ((case, data),) = runs.load_many([NOISE_DIR]).items()
    assert case == CASE and len(data) == 12
    return data


def _shift_to(new: list[runs.Run], old: list[runs.Run], metric: str, log_change: float) -> list[runs.Run]:
    """``new`` scaled so that its geometric mean differs from ``old``'s by exactly ``log_change`` (worse)."""
    now = np.log([r.value(metric) for r in new]).mean() - np.log([r.value(metric) for r in old]).mean()
    worse_up = metric != "throughput_rps"
    target = log_change if worse_up else -log_change
    # scaled() makes latency factor x worse and throughput 1/x: one factor moves both the same way.
    factor = math.exp((target - now) if worse_up else -(target - now))
    return scaled(new, 0, factor)


@pytest.mark.parametrize("metric", ["p50_ms", "throughput_rps"])
def test_two_sample_detectable_change_is_the_welch_boundary(series, metric):
    data = compressed(series)
    old, new = data[:3], data[3:6]
    v = gate.judge(CASE, old, new, metric)
    assert v.method == gate.WELCH and v.detectable is not None and v.spread is not None
    d = math.log1p(v.detectable) if metric != "throughput_rps" else -math.log1p(-v.detectable)
    over = gate.judge(CASE, old, _shift_to(new, old, metric, d * 1.01), metric)
    under = gate.judge(CASE, old, _shift_to(new, old, metric, d * 0.99), metric)
    assert over.p_value < gate.DEFAULT_ALPHA <= under.p_value, (over.p_value, under.p_value)
    # Shifting one side leaves the spreads, so the detectable change stays what it was.
    assert over.detectable == pytest.approx(v.detectable) == under.detectable


def test_prediction_detectable_change_is_its_boundary(series):
    data = compressed(series)
    old = data[:6]
    v = gate.judge(CASE, old, [data[6]], "p50_ms")
    assert v.method == gate.PREDICTION
    d = math.log1p(v.detectable)
    assert gate.judge(CASE, old, _shift_to([data[6]], old, "p50_ms", d * 1.01), "p50_ms").p_value < gate.DEFAULT_ALPHA
    assert gate.judge(CASE, old, _shift_to([data[6]], old, "p50_ms", d * 0.99), "p50_ms").p_value >= gate.DEFAULT_ALPHA


def test_compare_says_what_3_noisy_runs_a_side_could_see(tmp_path, series):
    """A 15% step between 3 and 3 recorded runs: not flagged, and the output says how big a change had to be."""
    data = series
    old = _bench_file(tmp_path / "old.json", data[:3])
    new = _bench_file(tmp_path / "new.json", scaled(data[3:6], 0, 1.15))
    done = run_axon("compare", str(old), str(new))
    assert done.returncode == 0, done.stdout + done.stderr
    v = gate.judge(CASE, data[:3], scaled(data[3:6], 0, 1.15), "p50_ms")
    line = f"a change under {v.detectable:.0%} could not be told from noise with 3 runs a side (alpha 0.01, run-to-run spread ±{v.spread:.0%})"
    assert line in done.stdout and v.detectable > 0.15, done.stdout
    assert "REGRESSION" not in done.stdout
    payload = json.loads(run_axon("compare", str(old), str(new), "--json").stdout)
    assert payload["verdicts"][0]["detectable_change"] == pytest.approx(v.detectable) and payload["power"] == line


def test_one_run_a_side_is_never_called_no_regression(tmp_path, series):
    done = run_axon(
        "compare", str(_bench_file(tmp_path / "a.json", series[:1])), str(_bench_file(tmp_path / "b.json", series[1:2]))
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no change of any size could be told from noise with 1 run a side" in done.stdout
    assert "not judged" in done.stdout and "no regression" not in done.stdout, done.stdout


def test_history_with_25pct_spread_states_its_smallest_detectable_step(tmp_path, series):
    """+-25% run-to-run spread, the newest 2 runs 15% slower: rightly not flagged, and the output
    says how large a step had to be; a step just over that size is flagged, one just under is not."""
    data = compressed(series, 0.25)
    # The newest two put at the level of the rest (their own spread kept): a step added to them is
    # then exactly the step the power search adds to the history's noise.
    level = np.median([r.p50_ms for r in data[:10]]) / np.median([r.p50_ms for r in data[10:]])
    data = scaled(data, 10, level)
    quiet = history.judge_history(CASE, data, "p50_ms")
    assert not quiet.change_points and 0.15 < quiet.detectable < 1.0 and quiet.spread == pytest.approx(0.09, abs=0.02), quiet
    step = math.log1p(quiet.detectable)
    assert history.judge_history(CASE, scaled(data, 10, math.exp(step * 1.03)), "p50_ms").regression
    assert not history.judge_history(CASE, scaled(data, 10, math.exp(step * 0.97)), "p50_ms").change_points

    storage = tmp_path / "storage"
    storage.mkdir()
    for i, run in enumerate(scaled(data, 10, 1.15)):
        _bench_file(storage / f"{i + 1:04d}_run.json", [run], when=f"2026-11-29T03:{i:02d}:00+00:00")
    done = run_axon("compare", "--storage", str(storage))
    assert done.returncode == 0 and "REGRESSION" not in done.stdout, done.stdout + done.stderr
    # The step the newest runs carry is not counted as noise: the stated size is the quiet history's.
    line = f"a step under {quiet.detectable:.0%} in the newest 2 runs could not be told from noise with 12 runs of history (alpha 0.05, run-to-run spread ±{quiet.spread:.0%})"
    assert line in done.stdout, done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("test_closed_loop"))
    assert re.search(rf"\s{quiet.detectable:.0%}\s+no change point$", row), row
    payload = json.loads(run_axon("compare", "--storage", str(storage), "--json").stdout)
    assert payload["verdicts"][0]["detectable_step"] == pytest.approx(quiet.detectable) and payload["power"] == line


def test_a_short_history_says_it_can_see_no_step(tmp_path, series):
    """Under ~10 runs, the permutation test can't place a 2-run step at alpha 0.05 at any size: said, never "no regression"."""
    storage = tmp_path / "storage"
    storage.mkdir()
    for i, run in enumerate(series[:8]):
        _bench_file(storage / f"{i + 1:04d}_run.json", [run], when=f"2026-11-29T03:{i:02d}:00+00:00")
    done = run_axon("compare", "--storage", str(storage))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no step in the newest 2 runs, of any size up to 16x, could be told from noise with 8 runs of history" in done.stdout
    assert "not judged" in done.stdout and "no regression" not in done.stdout, done.stdout


def _record(run: runs.Run) -> dict:
    """The run's record carrying the run's (possibly rescaled) values."""
    record = copy.deepcopy(run.record)
    record["latency_ms"].update(p50=run.p50_ms, p99=run.p99_ms, mean=run.mean_ms)
    record["throughput_rps"] = run.throughput_rps
    record.pop("repeat", None)
    return record


def _bench_file(path: Path, data: list[runs.Run], when: str = "2026-11-29T03:00:00+00:00") -> Path:
    """A pytest-benchmark JSON of one case whose runs are ``data`` (as --axon-repeat saves them)."""
    template = json.loads(sorted(NOISE_DIR.rglob("*.json"))[0].read_text())
    bench = copy.deepcopy(template["benchmarks"][0])
    records = [_record(r) for r in data]
    if len(records) > 1:
        pooled = copy.deepcopy(records[0])
        pooled["repeats"] = [{**r, "repeat": {"index": i, "of": len(records)}} for i, r in enumerate(records)]
        bench["extra_info"]["axon"] = pooled
    else:
        bench["extra_info"]["axon"] = records[0]
    template["benchmarks"] = [bench]
    template["datetime"] = when
    path.write_text(json.dumps(template))
    return path
