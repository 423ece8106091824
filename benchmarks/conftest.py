"""The smoke subset: a few quick cases that the README's test command runs; the soak, run only when asked."""

from __future__ import annotations

import pytest

SMOKE = {
    "test_closed_loop[v1-batching-on-c4]",
    "test_closed_loop[v1-batching-off-c4]",
    "test_open_loop_poisson[v1-batching-on-rate500]",
    "test_open_loop_constant[v1-batching-on-rate1000]",  # the native open-loop engine
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("axon-soak", "axon soak (pytest benchmarks -m soak)")
    group.addoption("--axon-soak-minutes", type=float, default=10.0, help="soak length in minutes (default 10)")
    group.addoption(
        "--axon-soak-slice-s", type=float, default=60.0, help="throughput and p99 per slice of this many seconds (default 60)"
    )
    group.addoption(
        "--axon-soak-sample-s",
        type=float,
        default=30.0,
        help="RSS of client and server sampled every this many seconds (default 30)",
    )
    group.addoption("--axon-soak-out", help="folder for soak.json, soak.png and soak.md (default: a temporary folder, printed)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: a long run (minutes) checking errors, memory and drift; deselected unless -m selects it"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.name in SMOKE:
            item.add_marker(pytest.mark.axon_smoke)
    # Not in the default run: the soak takes minutes. `-m soak` (or any -m naming it) selects it.
    if "soak" not in (config.getoption("-m") or ""):
        kept = [item for item in items if item.get_closest_marker("soak") is None]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("soak") is not None])
            items[:] = kept
