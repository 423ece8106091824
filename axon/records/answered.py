"""What a run's counts vouch for: the answered requests, and the latencies that are theirs.

Percentiles mean one thing on every engine: the latency of answered requests. The python
engine sees each request's gRPC status, so its histogram holds answered requests only; it keeps
the rejected requests' latency apart. h2load sees HTTP status only: a request Triton rejects or
fails is HTTP 200 with a grpc-status trailer h2load ignores, and its log row (start, status,
duration) says nothing else, so no row can be told apart from an answered one. What is known
is how many: Triton's counters between two scrapes inside the window (``verification``). So,
for the native engine:

- the counts agree and Triton failed nothing between the scrapes: every HTTP-200 row was an
  answer, and the histogram is the answered requests';
- Triton failed some (``REJECTED``, ``SERVER_FAILURE``), or answered fewer than h2load
  completed: the rows mix answers and rejections, so the record shows no percentiles as the
  answered requests'. The rows' histogram is kept apart (``latency_apart``, of
  ``http_200_unresolved``) with how many of them were not answered, and the exact bounds that
  count puts on the answered requests' percentiles;
- the counts disagree (unverified): h2load's completions are not shown as answered requests.
  ``requests.ok`` is the share Triton confirms (its successes between the scrapes, at most
  h2load's completions there, as a share of those completions, applied to the window's rows);
  the rest are failures of class ``UNCONFIRMED``, and throughput follows (basis ``server``).
  Where the check ran without Triton's counts (no scrapes, or counters that went backwards: the
  model unloaded), nothing is confirmed: ``ok`` 0 and no throughput (basis ``none``). A run cut
  short before the check says so instead, with h2load's own counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from axon.records import stats

UNCONFIRMED = "UNCONFIRMED"  # h2load saw HTTP 200; Triton's counts do not vouch for an answer
CLIENT, SERVER, NONE = "client", "server", "none"  # throughput_basis
BOUND_PERCENTILES = (50.0, 90.0, 99.0)


class LatencyApart(TypedDict, total=False):
    """Latencies kept out of ``latency_ms`` (which counts answered requests only)."""

    of: str  # "rejected" (python engine) or "http_200_unresolved" (native engine)
    requests: int
    unanswered: int  # native: of those rows, the requests Triton did not answer (from its counts)
    latency_ms: dict
    histogram: str  # encoded HDR histogram, µs
    answered_bounds_ms: dict[str, list[float]]  # native: "p50" -> [low, high] for the answered requests
    why: str


@dataclass(frozen=True)
class Vouched:
    """A run's counts after the check: what its record may show as answered."""

    ok: int
    failures: dict[str, int]
    basis: str  # CLIENT, SERVER or NONE: where requests.ok (and so throughput) comes from
    latency_resolved: bool  # the histogram holds answered requests only


def vouch(verification: dict | None, ok: int, failures: dict[str, int], rows: int, complete: bool) -> Vouched:
    """The answered requests a run's counts vouch for (see the module doc).

    ``verification``: the native engine's count check (None: an engine that sees each status);
    ``rows``: the requests in its latency histogram (native: h2load's HTTP-200 rows).
    """
    if verification is None:
        return Vouched(ok, failures, CLIENT, True)
    if verification.get("verified"):
        return Vouched(ok, failures, CLIENT, not verification.get("server_failures_in_window"))
    # Counters that went backwards (the model unloaded, the server restarted) count nothing.
    counted = verification.get("server_success", -1) >= 0
    if counted:
        client = verification["client_completed"]
        share = min(client, verification["server_success"]) / client if client else 0.0
        confirmed = min(ok, round(rows * share))
    elif complete:
        confirmed = 0
    else:
        return Vouched(ok, failures, CLIENT, True)  # cut short before the check: the incomplete reason says so
    out = dict(failures)
    if ok - confirmed:
        out[UNCONFIRMED] = ok - confirmed
    # Triton answering at least every request h2load completed, and failing none, leaves no row
    # that was not an answer (another client's load, a lost host's, can push its count above).
    clean = (
        counted
        and verification["server_success"] >= verification["client_completed"]
        and not verification.get("server_failures_in_window")
    )
    return Vouched(confirmed, out, SERVER if counted else NONE, clean)


def throughput(vouched: Vouched, measured_s: float) -> float:
    """Answered requests per second; NaN where nothing could be confirmed."""
    if vouched.basis == NONE:
        return math.nan
    return vouched.ok / measured_s if measured_s and measured_s > 0 else 0.0


def unresolved(histogram, unanswered: int) -> LatencyApart:
    """The native engine's rows when some were not answered: kept apart, with bounds on the answered requests' percentiles.

    The answered requests are ``n - f`` of the ``n`` rows, which ones unknown: their q-th
    percentile is the value of rank ``ceil(q (n - f))`` among themselves, so among all rows it
    lies between ranks ``ceil(q (n - f))`` and that plus ``f``.
    """
    n = histogram.get_total_count()
    f = min(max(unanswered, 0), n)
    apart: LatencyApart = {
        "of": "http_200_unresolved",
        "requests": n,
        "unanswered": f,
        "latency_ms": stats.LatencySummary.of(histogram).as_dict(),
        "histogram": stats.encode(histogram),
        "why": "h2load counts a request Triton rejected or failed as HTTP 200 and cannot tell it apart, "
        "so these rows mix answered and unanswered requests; latency_ms holds none of them",
    }
    if n - f > 0:
        bounds = {}
        for q in BOUND_PERCENTILES:
            rank = math.ceil(q / 100 * (n - f))
            low, high = (histogram.get_value_at_percentile(100.0 * r / n) / 1e3 for r in (rank, rank + f))
            bounds[f"p{q:g}"] = [low, high]
        apart["answered_bounds_ms"] = bounds
    return apart


def rejected(encoded: list[str]) -> LatencyApart | None:
    """The python engine's rejected requests' latency (answered with a rejection), merged over workers; None when there were none."""
    histogram = stats.merge([e for e in encoded if e])
    if not histogram.get_total_count():
        return None
    return {
        "of": "rejected",
        "requests": histogram.get_total_count(),
        "latency_ms": stats.LatencySummary.of(histogram).as_dict(),
        "histogram": stats.encode(histogram),
        "why": "requests Triton's queue policy rejected (REJECTED), timed as answered ones are; latency_ms holds answered requests only",
    }
