"""SLO selection and messages. (The regression gate is tested in tests/test_gate.py.)"""

from __future__ import annotations

import pytest

from axon.errors import AxonError
from axon.verdicts import slo


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
    assert slo.violations(_record(p50=7.42), BUDGETS) == [
        "p50 7.42 ms > budget 7.00 ms (particle_classifier_v1, batching on, c=64) [trigger]"
    ]
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
    (tmp_path / "bad.toml").write_text("[[slo]]\np50 = 3\n")
    with pytest.raises(AxonError, match="unknown keys"):
        slo.load_budgets(tmp_path / "bad.toml")
    (tmp_path / "worse.toml").write_text('[[slo]]\np50_ms = "fast"\n')
    with pytest.raises(AxonError, match="must be a number"):
        slo.load_budgets(tmp_path / "worse.toml")


def test_a_path_budget_with_a_model_limits_that_models_calls_in_the_path():
    v1, v2 = "particle_classifier_v1", "particle_classifier_v2"
    path = {
        **_record(p50=8.0, p99=12.0, model="path:hlt"),
        "path": {
            "models": {v1: {}, v2: {}},
            "calls": [
                {"step": 1, "model": v1, "latency_ms": {"p50": 1.0, "p99": 3.0}},
                {"step": 2, "model": v2, "latency_ms": {"p50": 2.0, "p99": 6.0}},
                {"step": 2, "model": v1, "latency_ms": {"p50": 1.5, "p99": 4.5}},
            ],
        },
    }
    budgets = slo.parse_budgets(
        [
            {"name": "v1 in hlt", "path": "hlt", "model": "v1", "p99_ms": 4.0},
            {"name": "pn in hlt", "path": "hlt", "model": "pn", "p99_ms": 0.1},
            {"name": "v1 alone", "model": "v1", "p99_ms": 0.1},
        ],
        "test",
    )
    # The worst of v1's two calls (4.5 ms) breaks its 4 ms; pn is not called; a plain v1 budget is not a path's.
    assert slo.violations(path, budgets) == [
        f"{v1}'s calls p99 4.50 ms > budget 4.00 ms (path:hlt, batching on, c=64) [v1 in hlt]"
    ]
    assert [b.name for b in budgets if b.applies_to(path)] == ["v1 in hlt"]
    assert slo.violations(path, slo.parse_budgets([{"name": "ok", "path": "hlt", "model": "v1", "p99_ms": 5.0}], "test")) == []
