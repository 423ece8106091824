"""axon tune on a server that dies (SIGKILL) or hangs (SIGSTOP) while a candidate loads.

The real CLI on the real embedded Triton. Each signal is sent when axon prints that it is loading
the candidate (its own progress line), never after a guessed delay. Tiny runs: 3 candidates,
2 rounds, one concurrency, half-second windows.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from axon.study.tune import report
from tests.helpers import LineWatcher, start_axon

MODEL = "particle_classifier_v1"
TINY = (
    "--delay-us",
    "0,500",
    "--repeat",
    "2",
    "--duration",
    "0.5",
    "--warmup",
    "0.2",
    "--concurrency",
    "4",
    "--confirm-pairs",
    "2",
)


def _server_pid(parent: int, timeout_s: float = 120) -> int:
    """The tritonserver that the axon process ``parent`` started (its child; setpriv execs into it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
                if comm.startswith("tritonserver") and int(rest[1]) == parent and rest[0] not in ("Z", "X"):
                    return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no tritonserver child of {parent}")


def _loading(cid: str, again: bool = False):
    return lambda line: f"loading {cid} " in line and (("again" in line) == again)


def _kill_group(pid: int) -> None:
    """Cleanup for a failed test: a stopped server ignores the SIGTERM it gets when axon dies."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def test_a_candidate_that_kills_then_hangs_the_server_is_named_and_the_search_goes_on(artifacts, tmp_path):
    out = tmp_path / "tune"
    proc = start_axon("tune", "--model", "v1", "--artifacts", str(artifacts), "--out", str(out), *TINY)
    watcher, printed = LineWatcher(proc.stderr), LineWatcher(proc.stdout)
    touched: list[int] = []
    try:
        watcher.wait_for(_loading("c1"), 300)
        touched.append(_server_pid(proc.pid))
        os.kill(touched[-1], signal.SIGKILL)  # dies during its load
        watcher.wait_for(_loading("c1", again=True), 120)
        touched.append(_server_pid(proc.pid))
        os.kill(touched[-1], signal.SIGSTOP)  # hangs during its load, the process alive
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in touched:
            _kill_group(pid)
    stderr, stdout = watcher.rest(), printed.rest()
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    doc = json.loads((out / MODEL / report.RECORD_FILE).read_text())
    by_id = {c["id"]: c for c in doc["candidates"]}
    # Named: c1 crashed the server (killed, then hung); tried twice, then left.
    assert by_id["c1"]["crashed"] and by_id["c1"]["error"].startswith(
        "crashed the server twice (killed by SIGKILL; then stopped (SIGSTOP"
    )
    assert [r["candidate"] for r in doc["server_restarts"]] == ["c1", "c1"]
    assert all(Path(r["log"]).is_file() for r in doc["server_restarts"])
    # No other result lost: the default and c2 measured in both rounds, c1 never.
    assert [(r["tune"]["round"], r["tune"]["candidate"]) for r in doc["runs"]] == [(0, "c0"), (0, "c2"), (1, "c0"), (1, "c2")]
    assert not by_id["c2"]["error"] and doc["restored"]["matches_initial"] is True
    row = next(line for line in stdout.splitlines() if " c1 " in f" {line} ")
    assert "crashed the server" in row
    # The hang was caught by the watch, not by a deadline.
    assert "stopped (SIGSTOP" in stderr and "Deadline" not in stderr


def test_sigterm_ends_a_tune_on_a_hung_server_keeping_what_was_measured(artifacts, tmp_path):
    out = tmp_path / "tune"
    proc = start_axon("tune", "--model", "v1", "--artifacts", str(artifacts), "--out", str(out), *TINY)
    watcher, printed = LineWatcher(proc.stderr), LineWatcher(proc.stdout)
    touched: list[int] = []
    try:
        watcher.wait_for(_loading("c1"), 300)
        touched.append(_server_pid(proc.pid))
        os.kill(touched[-1], signal.SIGSTOP)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in touched:
            _kill_group(pid)
    stderr, _ = watcher.rest(), printed.rest()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "axon: terminated" in stderr and "Traceback" not in stderr
    # Prompt: no wait on the hung server's deadlines (300 s each before), nor a 15 s polite stop.
    assert took < 30, (took, stderr[-2000:])
    doc = json.loads((out / MODEL / report.RECORD_FILE).read_text())
    assert [(r["tune"]["round"], r["tune"]["candidate"]) for r in doc["runs"]] == [(0, "c0")]  # what was measured is kept
    assert (
        not Path(f"/proc/{touched[0]}").exists()
        or "Z" in Path(f"/proc/{touched[0]}/stat").read_text().rsplit(")", 1)[1].split()[0]
    )
