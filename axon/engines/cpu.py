"""Client CPU time, precise enough for short windows.

psutil's ``cpu_times`` come from /proc/<pid>/stat in clock ticks (10 ms here): a light client
such as h2load at one request in flight uses ~10 ms of CPU in a one-second window, so a tick
is the whole measurement. ``time.process_time`` (our own process) and /proc/<pid>/task/*/schedstat
(another process, summed over its threads) count nanoseconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil


def own_cpu_s() -> float:
    """User+system CPU seconds of this process, all threads."""
    return time.process_time()


def process_cpu_s(pid: int) -> float:
    """CPU seconds of another process, all threads; raises psutil.Error when it is gone."""
    total_ns = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total_ns += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        # Not Linux, or a thread exited while we read: fall back to ticks.
        return sum(psutil.Process(pid).cpu_times()[:2])
    return total_ns / 1e9
