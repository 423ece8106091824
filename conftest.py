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


# --------------------------------------------------------------------------- the leak check
#
# Every embedded server's work folder, and so the command line of tritonserver and of each of
# its stubs, carries the label in AXON_SESSION_LABEL (axon.serving.embedded.workdir_prefix).
# Each session sets a label of its own at its start, inherited by every process it starts
# (an `axon serve` a test runs, too), and at its end counts as left behind only the processes
# with that label: another checkout's servers, a user's `axon serve`, or an outer session's
# servers (a session run inside a test) are never this session's leak.
#
# Under pytest-xdist (make test runs the suite on several workers) the workers keep the label
# of the session that started them and check nothing at their own end: one worker's end is not
# the others', and a worker's exit status never reaches the run's. The controlling session,
# which ends after every worker, checks for all of them.

_previous_label: list[str | None] = []


def session_label() -> str:
    import os

    from axon.serving.embedded import SESSION_LABEL_ENV

    return os.environ[SESSION_LABEL_ENV]


def pytest_configure(config):
    import os
    import secrets

    from axon.serving.embedded import SESSION_LABEL_ENV

    _previous_label.append(os.environ.get(SESSION_LABEL_ENV))
    if not (_is_xdist_worker(config) and os.environ.get(SESSION_LABEL_ENV)):
        os.environ[SESSION_LABEL_ENV] = f"s{os.getpid()}{secrets.token_hex(3)}"
    _children_get_default_signals()


def _is_xdist_worker(config) -> bool:
    # Not PYTEST_XDIST_WORKER: a session that a test runs in a subprocess inherits that variable,
    # and must still be a session of its own.
    return hasattr(config, "workerinput")


def _children_get_default_signals() -> None:
    """SIGINT and SIGQUIT handled here, so every child the tests start execs with both at their defaults.

    A suite started as a background job of a non-interactive shell inherits both ignored, and
    a child inherits an ignored signal but not a handler: the Ctrl-C tests would fail for the
    way the suite was launched. (Not a pre-exec hook in each Popen: with grpc loaded, the hook
    runs grpc's fork handlers in the child, and a child has died of SIGABRT there.)
    """
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, lambda signum, frame: None)  # ignored here as before, default in children


# make test hands a test module to one xdist worker at a time, in collection order: the modules
# that take longest go first, so that no worker starts one of them while the others are done
# (longest first; measured with --durations on 2026-12-07). Only the order changes; a module
# missing here keeps its place after these.
LONGEST_MODULES = (
    "test_first_hour.py",
    "test_tune.py",
    "test_dask.py",
    "test_faults.py",
    "test_results_schema.py",
    "test_paths.py",
    "test_pytest_plugin.py",
    "test_gate.py",
    "test_any_model.py",
    "test_study_report.py",
    "test_size.py",
    "test_docker.py",
    "test_bench.py",
    "test_cli_serve.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's own order stays


def pytest_unconfigure(config):
    import os

    from axon.serving.embedded import SESSION_LABEL_ENV

    previous = _previous_label.pop() if _previous_label else None
    if previous is None:
        os.environ.pop(SESSION_LABEL_ENV, None)
    else:
        os.environ[SESSION_LABEL_ENV] = previous


def leftover_servers(label: str) -> list[str]:
    """tritonserver or stub processes started by the session labelled ``label`` (zombies aside)."""
    import psutil

    from axon.serving.embedded import WORKDIR_PREFIX

    mark = f"{WORKDIR_PREFIX}{label}-"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if mark in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.info['pid']}: {cmd[:120]}")
    return found


def pytest_sessionfinish(session, exitstatus):
    """No tritonserver or python-backend stub this session started may outlive it."""
    import time

    if _is_xdist_worker(session.config):
        return
    label = session_label()
    deadline = time.monotonic() + 10
    leftovers = leftover_servers(label)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = leftover_servers(label)
    if leftovers:
        print(f"\nERROR: Triton processes this session ({label}) left behind after the run:\n  " + "\n  ".join(leftovers))
        session.exitstatus = 1
