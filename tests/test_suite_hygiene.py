"""The suite's own leak check counts only what this session started: another checkout's servers never fail a run.

conftest.py gives each session a label (AXON_SESSION_LABEL) that every embedded server's work
folder, and so every tritonserver and stub command line, carries. Each inner session here is a
real pytest process with that conftest loaded, next to a "foreign" server started outside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from axon.serving.embedded import SESSION_LABEL_ENV, WORKDIR_PREFIX
from tests.helpers import LineWatcher

ROOT = Path(__file__).resolve().parent.parent


def _foreign_env() -> dict[str, str]:
    """The environment of a process this session did not start: another checkout, a user's shell."""
    env = dict(os.environ)
    env.pop(SESSION_LABEL_ENV, None)
    return env


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], ready: str | None = None):
    """A process in its own group, killed with everything it started whatever happens."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True
    )
    try:
        if ready is not None:
            LineWatcher(proc.stdout).wait_for(lambda line: ready in line, timeout_s=180)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _inner_pytest(tmp_path: Path, test_source: str) -> subprocess.CompletedProcess:
    """A pytest session of its own, with the project's conftest (and so its leak check) loaded."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_source))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "conftest",
        "--rootdir",
        str(tmp_path),
        "-c",
        os.devnull,
        str(tmp_path / "test_inner.py"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


# A stand-in for a leaked server: a process whose command line carries a Triton work folder of
# the label given (the check reads command lines, so this is exactly what it sees of a stub).
STAND_IN = "import sys, time; time.sleep(600)"


def test_a_labelled_leftover_fails_the_session_and_a_foreign_one_does_not(tmp_path):
    pidfile = tmp_path / "leaked.pid"
    foreign = [sys.executable, "-c", STAND_IN, f"/tmp/{WORKDIR_PREFIX}someoneelse-x/backends/python/triton_python_backend_stub"]
    with _process(foreign, _foreign_env()):
        try:
            done = _inner_pytest(
                tmp_path,
                f"""
                import os, subprocess, sys
                def test_leaks_a_server():
                    label = os.environ["{SESSION_LABEL_ENV}"]
                    p = subprocess.Popen([sys.executable, "-c", {STAND_IN!r}, "/tmp/{WORKDIR_PREFIX}" + label + "-x/backends/python/triton_python_backend_stub"], start_new_session=True)
                    open({str(pidfile)!r}, "w").write(str(p.pid))
            """,
            )
        finally:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
        # The check can fail: this session's own leftover is caught...
        assert done.returncode == 1, done.stdout + done.stderr
        assert "left behind" in done.stdout and "someoneelse" not in done.stdout, done.stdout
        # ...and the foreign one alone never fails a session.
        clean = _inner_pytest(tmp_path, "def test_nothing():\n    pass\n")
        assert clean.returncode == 0 and "left behind" not in clean.stdout, clean.stdout + clean.stderr


@pytest.mark.alone  # judges the schedule or a latency the machine must keep
@pytest.mark.server
def test_the_benchmark_smoke_passes_while_another_axon_serve_runs(artifacts, tmp_path):
    """`pytest benchmarks -m axon_smoke`, as `make test` runs it, beside a real `axon serve` started outside the session."""
    serve = [sys.executable, "-m", "axon.cli", "serve", "--artifacts", str(artifacts), "--models", "v1"]
    with _process(serve, _foreign_env(), ready="press Ctrl-C"):
        smoke = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks", "-m", "axon_smoke",
            "--axon-artifacts", str(artifacts), "--axon-duration", "1", "--axon-warmup", "0.3",
            "--axon-slo-file", "benchmarks/smoke-slo.toml", "--benchmark-json", str(tmp_path / "smoke.json"),
        ]  # fmt: skip
        done = subprocess.run(smoke, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "left behind" not in done.stdout and re.search(r"\b\d+ passed", done.stdout) and " failed" not in done.stdout, (
        done.stdout[-3000:]
    )
