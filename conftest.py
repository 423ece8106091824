"""Fixtures shared by tests/ and benchmarks/: one small trained model set per session."""

from __future__ import annotations

from pathlib import Path

import pytest

# Small enough to train in seconds on 2 cores, large enough to validate batches of 256.
TEST_ROWS = 12_000
TEST_EPOCHS = 2


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Train v1 and v2 on synthetic data, export them and write every repository, once."""
    from axon.offline import data, pipeline

    out = tmp_path_factory.mktemp("artifacts")
    dataset = data.synthetic(TEST_ROWS, seed=1)
    pipeline.build(dataset, out, epochs=TEST_EPOCHS, seed=1)
    return out


@pytest.fixture(scope="session")
def validation_rows(artifacts):
    import numpy as np

    from axon.offline.pipeline import VALIDATION_ROWS_FILE

    with np.load(artifacts / VALIDATION_ROWS_FILE) as npz:
        return npz["features"], npz["labels"]


@pytest.fixture(scope="session")
def server_v1(artifacts):
    """One embedded server (batching on, v1 and v2) shared by every test that only reads from it.

    A Triton start costs seconds on 2 cores; tests that stop, stall, kill or reconfigure a
    server start their own.
    """
    from axon.names import DEFAULT_MODELS
    from axon.serving.backends import embedded_repository
    from axon.serving.embedded import EmbeddedServer

    with EmbeddedServer(embedded_repository(artifacts, "on"), models=list(DEFAULT_MODELS)) as server:
        yield server


def _leftover_servers() -> list[str]:
    """tritonserver or stub processes started by axon (their paths carry axon's work-dir prefix)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "axon-triton-" in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.info['pid']}: {cmd[:120]}")
    return found


def pytest_sessionfinish(session, exitstatus):
    """No tritonserver or python-backend stub may outlive the test run."""
    import time

    deadline = time.monotonic() + 10
    leftovers = _leftover_servers()
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = _leftover_servers()
    if leftovers:
        print("\nERROR: Triton processes left behind after the run:\n  " + "\n  ".join(leftovers))
        session.exitstatus = 1
