"""The server axon started, watched during a run: its death named, its memory sampled and guarded.

A benchmark must never take down what it measures. On a shared SONIC node, a Triton driven into
the kernel's OOM killer takes every other user's inference with it (perf_analyzer at 8,000/s
grew Triton to 17 GB here). So while a run offers load to a server axon started, a thread
samples the server's memory (its whole process group: tritonserver and the python-backend
stubs, each page counted once) every :data:`SAMPLE_INTERVAL_S`, and the run's guard says "stop"
as soon as that passes the limit, long before the kernel would have to kill anything. The same
guard says "stop" the moment the server dies, naming how (signal, exit code, OOM killer).

A server axon did not start (``--url``) is not watched, and the record says so.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path
from typing import Protocol

SAMPLE_INTERVAL_S = 0.25  # a server grows by at most a few hundred MB in this time, far from any limit we set
DEFAULT_MEMORY_FRACTION = 0.5  # of the memory this machine (or its cgroup) has: the rest stays for the client and others
NOT_WATCHED = "the server was not started by axon (--url): its memory was not watched"


class Watchable(Protocol):
    def death(self) -> str | None: ...

    def memory_bytes(self) -> int | None: ...


def machine_memory_bytes() -> int | None:
    """The memory this process may use: the machine's, or its cgroup's limit where that is lower."""
    total = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError):
        cgroup = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[-1]
        limit_file = Path("/sys/fs/cgroup") / cgroup.lstrip("/") / "memory.max"
        text = limit_file.read_text().strip()
        if text != "max":
            total = min(int(text), total) if total else int(text)
    return total


def default_limit_bytes() -> int | None:
    total = machine_memory_bytes()
    return int(total * DEFAULT_MEMORY_FRACTION) if total else None


def gib(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "?"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def group_memory_bytes(pids: list[int]) -> int | None:
    """Proportional set size summed over ``pids``: shared memory mapped by several of them counts once.

    The python backend's shared-memory regions are mapped by tritonserver and by every stub;
    their resident sizes (RSS) would count each region once per process. PSS splits each
    shared page between its mappers, so the sum is the memory the group really holds.
    """
    total, seen = 0, False
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    seen = True
                    break
    return total if seen else None


class ServerWatch:
    """Samples a server's memory in a thread during one run; :meth:`reason` is the run's guard.

    ``limit_bytes`` of 0 or None turns the memory guard off (the memory is still recorded).
    ``clock`` and ``interval_s`` let a unit test drive it without waiting.
    """

    def __init__(
        self,
        server: Watchable,
        limit_bytes: int | None,
        interval_s: float = SAMPLE_INTERVAL_S,
        clock=time.monotonic,
        limit_option: str = "--max-server-memory",
    ):
        self.server = server
        self.limit = limit_bytes or None
        self.interval_s = interval_s
        self.clock = clock
        self.limit_option = limit_option
        self.first: int | None = None
        self.last: int | None = None
        self.peak: int | None = None
        self.samples = 0
        self._over: str | None = None
        self._death: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """One look at the server: alive? how much memory? (the thread calls this; so may a test)."""
        if self._death is None:
            self._death = self.server.death()
        if self._death is not None:
            return
        used = self.server.memory_bytes()
        if used is None:
            return
        self.samples += 1
        self.first = used if self.first is None else self.first
        self.last = used
        self.peak = used if self.peak is None else max(self.peak, used)
        if self.limit and used > self.limit and self._over is None:
            self._over = f"server memory {gib(used)} passed the limit of {gib(self.limit)} ({self.limit_option}); the load was stopped before the kernel's OOM killer would act"

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            # An Event wait, not a sleep: stop() ends it at once.
            self._stop.wait(self.interval_s)

    def __enter__(self) -> ServerWatch:
        self.sample()  # the first reading is the baseline, and a server already over the limit stops the run at once
        self._thread = threading.Thread(target=self._loop, name="axon-server-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()  # the server's memory (or death) at the run's end

    def reason(self) -> str | None:
        """Why the load must stop now: the server died, or its memory passed the limit; else None."""
        if self._death is not None:
            return f"server died: the Triton axon started was {self._death}"
        return self._over

    def summary(self) -> dict:
        """The record's ``server_memory``."""
        if self.samples == 0 and self._death is None:
            return not_watched(f"no reading of the {getattr(self.server, 'backend', '')} server's memory could be taken")
        return {
            "watched": True,
            "reason": None,
            "method": f"PSS summed over the server's process group, sampled every {self.interval_s:g} s",
            "samples": self.samples,
            "start_bytes": self.first,
            "end_bytes": self.last,
            "peak_bytes": self.peak,
            "growth_bytes": self.last - self.first if self.first is not None and self.last is not None else None,
            "limit_bytes": self.limit,
            "stopped_by_limit": self._over is not None,
        }


def not_watched(reason: str = NOT_WATCHED) -> dict:
    return {
        "watched": False,
        "reason": reason,
        "method": None,
        "samples": 0,
        "start_bytes": None,
        "end_bytes": None,
        "peak_bytes": None,
        "growth_bytes": None,
        "limit_bytes": None,
        "stopped_by_limit": False,
    }
