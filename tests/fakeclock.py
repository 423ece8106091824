"""An asyncio event loop on virtual time: sleeping advances the clock instantly.

With it, scheduling tests run a scripted server for 'seconds' in milliseconds, exactly and
repeatably, whatever else the machine is doing.
"""

from __future__ import annotations

import asyncio
import selectors


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self):
        super().__init__()
        self.now = 0.0

    def select(self, timeout=None):
        # Nothing real to wait for: jump to the next timer instead of blocking.
        if timeout is not None and timeout > 0:
            self.now += timeout
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self):
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(coro_factory):
    """Run ``coro_factory(clock)`` on a virtual-time loop; return its result."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro_factory(loop.time))
    finally:
        loop.close()
