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
