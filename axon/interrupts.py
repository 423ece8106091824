"""Ctrl-C during a measurement: the first press stops the run, later presses can't lose it.

The first Ctrl-C raises KeyboardInterrupt as usual: the engine stops its workers and hands
back what was measured, the CLI saves it, and servers stop. A second press used to raise
again in the middle of that, and the partial record was lost; here it only prints a notice.
Every wait in that shutdown is bounded (request timeouts, scrape timeouts, process joins),
so the command still ends on its own.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

STOPPING = "axon: stopping: saving what was measured (a second Ctrl-C will not cut that short)"
ALREADY_STOPPING = "axon: already stopping: saving what was measured and stopping the processes axon started"


class CtrlC:
    """A SIGINT handler: KeyboardInterrupt on the first press, a notice on every later one."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self.presses = 0

    def __call__(self, signum, frame) -> None:
        self.presses += 1
        out = self.stream or sys.stderr
        if self.presses > 1:
            print(ALREADY_STOPPING, file=out, flush=True)
            return
        print(STOPPING, file=out, flush=True)
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_once(stream: TextIO | None = None) -> Iterator[CtrlC]:
    """Install :class:`CtrlC` for the block (main thread only; elsewhere Python's default stays)."""
    handler = CtrlC(stream)
    if threading.current_thread() is not threading.main_thread():
        yield handler
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGINT, previous)
