"""`axon serve` as a user runs it: endpoints, --check, Ctrl-C and a killed parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import LineWatcher, assert_clean_error, run_axon

pytestmark = pytest.mark.server


def test_check_mode_answers_and_stops(artifacts):
    done = run_axon("serve", "--artifacts", str(artifacts), "--batching", "both", "--models", "v1", "--check", timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("check particle_classifier_v1: p(signal) = ") == 2
    assert "local onnxruntime agrees" in done.stdout
    assert "grpc    127.0.0.1:" in done.stdout and "metrics http://127.0.0.1:" in done.stdout


def test_bad_arguments(tmp_path):
    assert_clean_error(run_axon("serve", "--artifacts", str(tmp_path)), "model repository not found")
    assert_clean_error(run_axon("serve", "--models", "v7"), "unknown model")
    assert_clean_error(run_axon("serve", "--backend", "external"), "needs a URL")
    assert_clean_error(run_axon("serve", "--backend", "docker"), "docker")


def _start_serving(*args: str) -> tuple[subprocess.Popen, LineWatcher]:
    """`axon serve ARGS` in its own process group, once it says "serving" (on its own signal, never a nap)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "axon.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    out = LineWatcher(proc.stdout)
    try:
        out.wait_for(lambda line: "press Ctrl-C" in line, timeout_s=120)
    except BaseException:
        _kill_group(proc)
        raise
    return proc, out


def _kill_group(proc: subprocess.Popen) -> None:
    """Cleanup whatever happened: axon serve and everything it started (same process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextlib.contextmanager
def serving(*args: str):
    proc, out = _start_serving(*args)
    try:
        yield proc, out
    finally:
        _kill_group(proc)
        for child in _servers_of(proc):
            with contextlib.suppress(psutil.Error):
                child.kill()


def _servers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(proc.pid).children(recursive=True)
    return []


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def test_ctrl_c_stops_everything(artifacts):
    with serving("--artifacts", str(artifacts), "--models", "v1") as (proc, _):
        children = [p.pid for p in _servers_of(proc)]
        assert len(children) >= 2, "expected tritonserver and a python-backend stub"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert "Traceback" not in proc.stderr.read()
        assert _wait_gone(children) == []


def test_a_killed_parent_takes_the_server_with_it(artifacts):
    with serving("--artifacts", str(artifacts), "--models", "v1") as (proc, _):
        children = [p.pid for p in _servers_of(proc)]
        proc.kill()  # SIGKILL: no cleanup code runs in axon
        proc.wait(timeout=10)
        assert _wait_gone(children, timeout=30) == []


def _shm_regions_of(pids: list[int]) -> set[str]:
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            found |= {
                line.split()[-1]
                for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
                if "triton_python_backend_shm_region" in line
            }
    return found


def test_a_killed_triton_is_said_at_once_and_leaves_no_debris(artifacts):
    """kill -9 of the server under `axon serve`: the signal named, non-zero exit within 2 s, stubs and shared memory gone."""
    with serving("--artifacts", str(artifacts), "--models", "v1") as (proc, _):
        children = _servers_of(proc)
        (server,) = [c for c in children if "tritonserver" in " ".join(c.cmdline())]
        stubs = [c.pid for c in children if c.pid != server.pid]
        regions = _shm_regions_of([c.pid for c in children])
        assert stubs and regions, "expected python-backend stubs mapping shared memory"
        err = LineWatcher(proc.stderr)
        server.kill()
        killed = time.monotonic()
        err.wait_for(lambda line: "died: killed by SIGKILL" in line, timeout_s=10)
        said_within_s = time.monotonic() - killed
        code = proc.wait(timeout=30)
        assert code != 0 and "Traceback" not in err.rest(), err.lines
        assert said_within_s < 2.0, said_within_s
        assert _wait_gone(stubs) == []
        assert not [r for r in regions if os.path.exists(r)], regions


def test_ctrl_c_right_after_serving_is_never_lost(server_v1):
    """20 tries: SIGINT the moment `axon serve` says "serving" stops it within 5 s, every time.

    An external backend (the session's shared server) makes each try cost a Python start, not
    a Triton start; the wait loop that must take the signal is the same for every backend.
    """
    ep = server_v1.endpoints
    for attempt in range(20):
        with serving("--backend", "external", "--url", ep.grpc, "--metrics-url", ep.metrics, "--models", "v1") as (proc, _):
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pytest.fail(f"try {attempt + 1}: axon serve still running 5 s after SIGINT")
            assert code == 130, (attempt, code, proc.stderr.read())


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_signals_axon_does_not_handle_still_take_the_server_with_it(artifacts, sig):
    """A closed terminal (SIGHUP) or SIGQUIT ends Python without its cleanup; the kernel's
    parent-death signal still stops Triton, and Triton stops its stubs."""
    with serving("--artifacts", str(artifacts), "--models", "v1") as (proc, _):
        children = [p.pid for p in _servers_of(proc)]
        assert children
        proc.send_signal(sig)
        assert proc.wait(timeout=10) != 0
        assert _wait_gone(children, timeout=30) == []
