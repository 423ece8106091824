"""SLO selection and messages; the regression gate on recorded data (noise vs a real regression)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from axon import compare, slo, stats
from axon.errors import AxonError
from tests.helpers import run_axon

RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_run.json").read_text())


def _record(p50=5.0, p99=9.0, batching="on", concurrency=64, rate=None, failed=0, mismatches=0, model="particle_classifier_v1"):
    return {
        "model": model,
        "batching": batching,
        "load": {"mode": "open" if rate else "closed", "concurrency": None if rate else concurrency, "rate": rate},
        "latency_ms": {"p50": p50, "p90": p99, "p95": p99, "p99": p99, "p999": p99},
        "requests": {"sent": 1000, "ok": 1000 - failed, "failed": failed},
        "correctness": {"mismatches": mismatches},
        "throughput_rps": 5000.0,
    }


BUDGETS = slo.parse_budgets(
    [
        {"name": "trigger", "batching": "on", "mode": "closed", "max_concurrency": 64, "p50_ms": 7.0, "p99_ms": 25.0},
        {"name": "correct", "max_error_rate": 0.0, "max_mismatches": 0},
    ],
    "test",
)


def test_budget_selection():
    trigger = BUDGETS[0]
    assert trigger.applies_to(_record(concurrency=64)) and trigger.applies_to(_record(concurrency=1))
    assert not trigger.applies_to(_record(concurrency=128))
    assert not trigger.applies_to(_record(batching="off"))
    assert not trigger.applies_to(_record(rate=1000.0))
    assert BUDGETS[1].applies_to(_record(batching="off", concurrency=256))
    assert slo.covered(_record(concurrency=256), BUDGETS)


def test_violation_messages():
    assert slo.violations(_record(p50=6.99), BUDGETS) == []
    assert slo.violations(_record(p50=7.42), BUDGETS) == ["p50 7.42 ms > budget 7.00 ms (particle_classifier_v1, batching on, c=64) [trigger]"]
    msgs = slo.violations(_record(p50=8, p99=30, failed=10, mismatches=2), BUDGETS)
    assert len(msgs) == 4
    assert "error rate 1.00% > budget 0.00%" in msgs[2] and "2 correctness mismatches > budget 0" in msgs[3]
    # Batching off at c=64 is not covered by "trigger": only correctness applies.
    assert slo.violations(_record(batching="off", p50=14.6), BUDGETS) == []


def test_budget_files(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[[tool.axon.slo]]\nname = "a"\np50_ms = 3\n')
    assert slo.load_budgets(tmp_path / "pyproject.toml")[0].limits == {"p50_ms": 3}
    (tmp_path / "plain.toml").write_text('[[slo]]\np99_ms = 9\nbatching = "off"\n')
    assert slo.load_budgets(tmp_path / "plain.toml")[0].selector == {"batching": "off"}
    (tmp_path / "bad.toml").write_text('[[slo]]\np50 = 3\n')
    with pytest.raises(AxonError, match="unknown keys"):
        slo.load_budgets(tmp_path / "bad.toml")
    (tmp_path / "worse.toml").write_text('[[slo]]\np50_ms = "fast"\n')
    with pytest.raises(AxonError, match="must be a number"):
        slo.load_budgets(tmp_path / "worse.toml")


def _samples(encoded: str) -> np.ndarray:
    values, counts = stats.histogram_values_seconds(stats.decode(encoded))
    return np.repeat(values, counts)


def _case(name: str, samples: np.ndarray) -> compare.Case:
    hist = stats.new_histogram()
    for v in samples:
        stats.record_seconds(hist, v)
    s = stats.LatencySummary.of(hist)
    return compare.Case(name, s.p50, s.p99, s.mean, len(samples) / 3.0, stats.encode(hist))


def test_recorded_data_is_real_and_large_enough():
    assert RECORDED["requests"]["ok"] == stats.decode(RECORDED["histogram"]).get_total_count() > 1000


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_is_not_a_regression(seed):
    """Two random halves of one real run: the same server, only sampling noise between them."""
    samples = np.random.default_rng(seed).permutation(_samples(RECORDED["histogram"]))
    half = len(samples) // 2
    (change,) = compare.compare({"c": _case("c", samples[:half])}, {"c": _case("c", samples[half:])})
    assert not change.regression and not change.improvement


def test_a_real_regression_is_caught():
    samples = _samples(RECORDED["histogram"])
    rng = np.random.default_rng(0)
    half = rng.permutation(samples)[: len(samples) // 2]
    (change,) = compare.compare({"c": _case("c", half)}, {"c": _case("c", half * 1.25)})
    assert change.regression and change.p_value < 1e-6 and change.prob_slower > 0.5
    assert change.relative("p50_ms") == pytest.approx(0.25, abs=0.01)
    (back,) = compare.compare({"c": _case("c", half * 1.25)}, {"c": _case("c", half)})
    assert back.improvement and not back.regression


def test_small_but_significant_shifts_stay_under_the_threshold():
    half = np.random.default_rng(1).permutation(_samples(RECORDED["histogram"]))[:1500]
    (change,) = compare.compare({"c": _case("c", half)}, {"c": _case("c", half * 1.05)})
    assert not change.regression


def _bench_json(path: Path, cases: dict[str, compare.Case]) -> Path:
    benchmarks = []
    for name, c in cases.items():
        record = copy.deepcopy(RECORDED)
        record["latency_ms"] = {"p50": c.p50_ms, "p99": c.p99_ms, "mean": c.mean_ms}
        record["histogram"] = c.histogram
        benchmarks.append({"name": name, "extra_info": {"axon": record}})
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def test_axon_compare_exit_codes(tmp_path):
    samples = np.random.default_rng(2).permutation(_samples(RECORDED["histogram"]))
    a, b = samples[: len(samples) // 2], samples[len(samples) // 2 :]
    old = _bench_json(tmp_path / "0001_old.json", {"case": _case("case", a)})
    same = _bench_json(tmp_path / "0002_same.json", {"case": _case("case", b)})
    slower = _bench_json(tmp_path / "slower.json", {"case": _case("case", b * 1.3)})
    done = run_axon("compare", str(old), str(same))
    assert done.returncode == 0 and "no regression" in done.stdout, done.stdout + done.stderr
    done = run_axon("compare", str(old), str(slower))
    assert done.returncode == 1 and "REGRESSION" in done.stdout
    done = run_axon("compare", "--storage", str(tmp_path / "nothing-here"))
    assert done.returncode == 2 and "need at least two saved runs" in done.stderr
