"""Live progress of one case, for a terminal or for a log.

On a terminal: one tqdm bar that labels the warm-up; elsewhere (CI logs, pipes): plain lines,
no carriage returns, every few seconds, including one when the window opens, so a log shows
that the measurement is under way.

The line pairs like with like: the requests measured in the window so far with their average
rate over the window so far (a last-second rate beside a cumulative count read as a
contradiction: "540 requests, 0 req/s" when a worker had not yet published its count). p99 is
shown only where the engine reports it live (the python engine); h2load's latencies are read
at the end, so the native engine's line has none rather than a "-" that never fills.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from typing import TextIO

RATE_INTERVAL_S = 1.0
MIN_AVERAGE_S = 0.5  # an average over less of the window is mostly the workers' publishing step
PLAIN_INTERVAL_S = 2.0


class CaseProgress:
    """Called as ``progress(elapsed_s, sent, p99_ms)``; elapsed < 0 means warm-up."""

    def __init__(self, label: str, duration_s: float, stream: TextIO = sys.stderr, tty: bool | None = None):
        self.label, self.duration_s, self.stream = label, duration_s, stream
        self.tty = stream.isatty() if tty is None else tty
        self._samples: deque[tuple[float, int]] = deque()
        self._last_line = -math.inf
        self._window_said = False
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=round(duration_s, 1),
                desc=label,
                unit="s",
                file=stream,
                leave=False,
                bar_format="{desc} {bar} {n:.0f}/{total:.0f} s {postfix}",
            )

    def rate(self, now: float, sent: int) -> float:
        """Requests per second over the last RATE_INTERVAL_S."""
        self._samples.append((now, sent))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_INTERVAL_S:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        return (sent - n0) / (now - t0) if now > t0 else 0.0

    def __call__(self, elapsed: float, sent: int, p99_ms: float) -> None:
        now = time.monotonic()
        if elapsed < 0:
            text = f"warm-up, window opens in {-elapsed:.1f} s"
        else:
            shown = min(elapsed, self.duration_s)
            average = f", {sent / shown:,.0f} req/s on average" if shown >= MIN_AVERAGE_S else ""
            p99 = "" if math.isnan(p99_ms) else f", p99 {p99_ms:.2f} ms"
            text = f"window {shown:.0f}/{self.duration_s:g} s, {sent:,} requests so far{average}{p99}"
        if self._bar is not None:
            self._bar.n = min(max(round(elapsed, 1), 0.0), self._bar.total)
            self._bar.set_postfix_str(text)
            return
        opening = elapsed >= 0 and not self._window_said
        if opening or now - self._last_line >= PLAIN_INTERVAL_S:
            self._window_said = self._window_said or elapsed >= 0
            self._last_line = now
            print(f"{self.label}: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
