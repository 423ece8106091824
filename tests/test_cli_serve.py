"""`axon serve` as a user runs it: endpoints, --check, Ctrl-C and a killed parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.helpers import assert_clean_error, run_axon

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


def _start_serving(artifacts) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "axon.cli", "serve", "--artifacts", str(artifacts), "--models", "v1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if "press Ctrl-C" in line:
            break
        assert time.monotonic() < deadline
    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(children) >= 2, "expected tritonserver and a python-backend stub"
    return proc, children


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def test_ctrl_c_stops_everything(artifacts):
    proc, children = _start_serving(artifacts)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert "Traceback" not in proc.stderr.read()
    assert _wait_gone(children) == []


def test_a_killed_parent_takes_the_server_with_it(artifacts):
    proc, children = _start_serving(artifacts)
    proc.kill()  # SIGKILL: no cleanup code runs in axon
    proc.wait(timeout=10)
    assert _wait_gone(children, timeout=30) == []
