"""The smoke subset: a few quick cases that the README's test command runs."""

from __future__ import annotations

import pytest

SMOKE = {
    "test_closed_loop[v1-batching-on-c4]",
    "test_closed_loop[v1-batching-off-c4]",
    "test_open_loop_poisson[v1-batching-on-rate500]",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.name in SMOKE:
            item.add_marker(pytest.mark.axon_smoke)
