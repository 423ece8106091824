"""Latency statistics on an HDR histogram: exact merges across processes and hosts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

# Microsecond resolution from 1 us to 60 s, 3 significant digits (0.1% value error).
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    # Values beyond the range are clamped, never dropped: a 2-minute stall still counts.
    histogram.record_value(min(max(int(round(seconds * 1e6)), LOWEST_US), HIGHEST_US))


def encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def encode_microseconds(values_us: np.ndarray) -> str:
    """The encoded histogram of many latencies in µs (rounded, and clamped as :func:`record_seconds` does).

    Each distinct value is recorded once with its count: a run's hundreds of thousands of
    requests cost a few thousand calls, not one each.
    """
    histogram = new_histogram()
    us = np.clip(np.round(values_us), LOWEST_US, HIGHEST_US).astype(np.int64)
    values, counts = np.unique(us, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist()):
        histogram.record_value(value, count)
    return encode(histogram)


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


def merge(encoded: list[str]) -> HdrHistogram:
    total = new_histogram()
    for text in encoded:
        if text:
            total.add(decode(text))
    return total


@dataclass(frozen=True)
class LatencySummary:
    """Request latency in milliseconds."""

    count: int
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float
    stddev: float

    @classmethod
    def of(cls, histogram: HdrHistogram) -> LatencySummary:
        if histogram.get_total_count() == 0:
            return cls(0, *([float("nan")] * 9))
        ms = 1e-3
        return cls(
            count=histogram.get_total_count(),
            min=histogram.get_min_value() * ms,
            max=histogram.get_max_value() * ms,
            mean=histogram.get_mean_value() * ms,
            stddev=histogram.get_stddev() * ms,
            **{name: histogram.get_value_at_percentile(p) * ms for name, p in PERCENTILES.items()},
        )

    def as_dict(self) -> dict:
        return asdict(self)


def histogram_values_seconds(histogram: HdrHistogram) -> tuple[list[float], list[int]]:
    """(value in seconds, count) for each recorded bucket, for tests and significance tests."""
    values, counts = [], []
    for item in histogram.get_recorded_iterator():
        values.append(item.value_iterated_to * 1e-6)
        counts.append(item.count_at_value_iterated_to)
    return values, counts
