"""The server's processes: a child that dies with axon, its process group stopped whole, and
the python backend's shared memory it leaves behind; how it exited, said in words.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

# The server dies with axon (SIGTERM, even when axon is SIGKILLed): util-linux's setpriv sets
# the parent-death signal and execs tritonserver, which keeps it across the exec.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM"]


def die_with_parent() -> None:
    """In the child, before exec, where setpriv is missing: SIGTERM if axon dies.

    Only a fallback: a pre-exec hook makes Python fork() rather than vfork(), so grpc's fork
    handlers run in the child, and one restarted its poller there, met the descriptors
    Popen closes, and aborted the child (seen with h2load, 2026-12-01).
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def describe_exit(returncode: int, oom_kills_before: int | None = None) -> str:
    """``exited with code 1``, ``killed by SIGKILL``; the OOM killer named when the cgroup counted it."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else f"signal {-returncode}"
    said = f"killed by {name}"
    if -returncode == signal.SIGKILL:
        after = oom_kills()
        if oom_kills_before is not None and after is not None and after > oom_kills_before:
            said += " (the kernel's OOM killer: this machine's memory ran out)"
    return said


def oom_kills() -> int | None:
    """The OOM kills counted in this process's cgroup (cgroup v2), or None where it can't be read."""
    with contextlib.suppress(OSError, ValueError):
        cgroup = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[-1]
        for events in (Path("/sys/fs/cgroup") / cgroup.lstrip("/") / "memory.events", Path("/sys/fs/cgroup/memory.events")):
            if events.is_file():
                for line in events.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return None


# The python backend's shared memory: one region per model instance, made by tritonserver and
# mapped by its stubs. A killed server leaves them in /dev/shm (tens of MB each).
SHM_MARK = "triton_python_backend_shm_region"


def group_members(pgid: int) -> list[int]:
    """The processes in group ``pgid`` (a server started with its own session leads its group)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
    return members


def shm_regions(pids: list[int]) -> set[Path]:
    """The python backend's shared-memory files that these processes have mapped."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
                if SHM_MARK in path:
                    found.add(Path(path.removesuffix(" (deleted)")))
    return found


def stop_group(process: subprocess.Popen, timeout_s: float, known_regions: set[Path] = frozenset()) -> None:
    """Stop ``process`` and its whole group (SIGTERM, ``timeout_s``, then SIGKILL), and remove the
    shared-memory regions the group had mapped (``known_regions`` too: read while it lived)."""
    pgid = process.pid  # setsid made the child its own group leader
    # Read before the group dies: which shared-memory regions are this server's (never another's).
    regions = shm_regions(group_members(pgid)) | set(known_regions)
    # A dead server can't unload its models: its stubs get no grace, only SIGKILL.
    steps = ((signal.SIGKILL, 5.0),) if process.poll() is not None else ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0))
    for sig, wait_s in steps:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # The stubs are in the same group; make sure none outlives the server.
    deadline = time.monotonic() + 5.0
    while _group_alive(pgid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)
    for region in regions:  # a server that stopped cleanly removed its own; a killed one did not
        with contextlib.suppress(OSError):
            region.unlink()


def _group_alive(pgid: int) -> bool:
    """Whether a member of the group still runs. Zombies don't count: a stub orphaned by a killed
    server is reaped by init, which may take a second or more; signalling the group would
    "succeed" on the zombie all that while, and hold axon's exit past its 2 s promise."""
    for pid in group_members(pgid):
        with contextlib.suppress(OSError, IndexError):
            # /proc/PID/stat: "pid (comm) state ...": comm may hold spaces, so split after its ')'.
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state not in ("Z", "X"):
                return True
    return False
