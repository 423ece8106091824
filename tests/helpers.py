"""Small helpers shared by tests."""

from __future__ import annotations

import subprocess
import sys


def run_axon(*args: str, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process, as a user would."""
    return subprocess.run([sys.executable, "-m", "axon.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_clean_error(done: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    """A user error: the exit code, the message, and no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr)


def start_axon(*args: str) -> subprocess.Popen:
    """Start the real CLI in a child process whose stderr lines a test can wait on."""
    return subprocess.Popen(
        [sys.executable, "-m", "axon.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )


class LineWatcher:
    """Reads a child's stream in a thread, so a test can wait for a line the code under test prints.

    Waiting on the program's own progress (a signal from the code under test) instead of "by now
    N requests have passed" keeps a test independent of how fast the machine is.
    """

    def __init__(self, stream):
        import queue
        import threading

        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate, timeout_s: float) -> str:
        import queue
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no matching line within {timeout_s} s; saw: {self.lines[-5:]}") from None
            if line is None:
                raise AssertionError(f"the stream ended without a matching line; saw: {self.lines[-5:]}")
            self.lines.append(line)
            if predicate(line):
                return line

    def rest(self, timeout_s: float = 60) -> str:
        self._thread.join(timeout_s)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)


def window_under_way(line: str) -> bool:
    """A progress line of axon's own showing measured requests inside the window."""
    import re

    match = re.search(r"window [\d.]+/[\d.]+ s, ([\d,]+) requests", line)
    return bool(match) and int(match.group(1).replace(",", "")) > 0
