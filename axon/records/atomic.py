"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Results, metrics and configs all go through here, so an interrupted run never leaves a
truncated file where a complete one used to be.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    # Linux states it in /proc; elsewhere the only way to read it is to set it and set it back,
    # which briefly changes it for every thread, so that is the fallback.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0644 under the
        # usual umask), so results and configs stay readable by others, e.g. a Triton container.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict) -> None:
    write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
