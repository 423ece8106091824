"""The sizing model, pure arithmetic (docs/sizing.md names every assumption).

A trigger core spends ``client_ms`` of its own work per event, plus the inference: in-process
(``direct_ms`` of its CPU) or offloaded (``service_ms``: the CPU a remote call costs the client;
the wait itself is not CPU, as SONIC's asynchronous ExternalWork does not block the core). One
server takes ``capacity`` events/s within the p99 budget; ``headroom`` of it is kept back.

    usable        U = capacity x (1 - headroom)              [min'd with the link, if given]
    cores/server  n = U x (client_ms + service_ms) / 1000    (Little's law: cores = rate x time)
    servers       ceil(cores / n)                            (or ceil(event_rate / U))
    saved/event   direct_ms - service_ms
    farm gain     (client_ms + direct_ms) / (client_ms + service_ms) - 1
    network       U x bytes per event x 8 / 1e9 Gb/s

Every measured input comes as a :class:`Span` (the value used, and the low and high ends the
repeats allow), so every output carries its range: the low end from the low capacity and the
cheapest client, the high end from the other corner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict


@dataclass(frozen=True)
class Span:
    """A measured value and the range its repeats allow (``high`` None: no upper end measured)."""

    value: float
    low: float
    high: float | None

    @classmethod
    def of(cls, samples: list[float]) -> Span | None:
        import statistics

        return cls(statistics.median(samples), min(samples), max(samples)) if samples else None


class Measured(TypedDict):
    """What a measurement says of one subject (a model or a path) under one batching mode."""

    subject: str
    batching: str
    p99_budget_ms: float
    capacity_eps: Span  # events/s within the p99 budget: the highest that held, up to the first that failed
    capacity_by: str  # the arrivals and the engine that offered them, e.g. "constant (native)"
    p99_at_capacity_ms: float | None
    p50_at_capacity_ms: float | None
    service_ms: Span  # client CPU per event, offloaded
    service_client: str  # which client measured it (native, python, events)
    direct_ms: Span | None  # client CPU per event, in-process (None: not measured)
    bytes_in: int | None  # tensor bytes per event to the server
    bytes_out: int | None  # and back
    capacity_runs: list[tuple[float, float]]  # (events/s offered, p99 ms) of every capacity run, for the plot
    source: str


@dataclass(frozen=True)
class Given:
    client_ms: float  # the rest of the trigger's work per event, per core
    cores: int | None = None
    event_rate: float | None = None
    headroom: float = 0.2
    link_gbps: float | None = None


class Sizing(TypedDict):
    subject: str
    batching: str
    usable_eps: list  # [value, low, high]
    limited_by: str  # "p99 budget" or "link"
    cores_per_server: list
    servers: list | None  # for --cores, or for --event-rate
    servers_for: str | None
    cores_needed_offloaded: list | None  # for --event-rate
    cores_needed_in_process: list | None
    saved_ms_per_event: list | None
    farm_gain: list | None
    network_gbps: list | None


def _trio(f, a: Span, b: Span | None = None) -> list:
    """f over the value and the two corners (low with low, high with high); None where an end is missing."""
    b = b or Span(0.0, 0.0, 0.0)
    high = None if a.high is None or b.high is None else f(a.high, b.high)
    return [f(a.value, b.value), f(a.low, b.low), high]


def size(m: Measured, g: Given) -> Sizing:
    keep = 1.0 - g.headroom
    usable = Span(
        m["capacity_eps"].value * keep,
        m["capacity_eps"].low * keep,
        None if m["capacity_eps"].high is None else m["capacity_eps"].high * keep,
    )
    limited_by = "p99 budget"
    per_event_bytes = (m["bytes_in"] or 0) + (m["bytes_out"] or 0) if m["bytes_in"] is not None else None
    if g.link_gbps is not None and per_event_bytes:
        link_eps = g.link_gbps * 1e9 / 8 / per_event_bytes * keep
        if link_eps < usable.value:
            limited_by = "link"
        usable = Span(
            min(usable.value, link_eps),
            min(usable.low, link_eps),
            min(usable.high, link_eps) if usable.high is not None else link_eps,
        )
    service = m["service_ms"]
    per_core = Span(
        g.client_ms + service.value,
        g.client_ms + service.low,
        g.client_ms + (service.high if service.high is not None else service.value),
    )
    cores_per_server = _trio(lambda u, t: u * t / 1e3, usable, per_core)
    servers = servers_for = None
    need_off = need_in = None
    if g.event_rate is not None:
        servers_for = f"{g.event_rate:,.0f} events/s"
        servers = [_servers(g.event_rate, u) for u in _ends(usable)]
        need_off = [g.event_rate * t / 1e3 for t in (per_core.value, per_core.low, per_core.high)]
    elif g.cores is not None:
        servers_for = f"{g.cores:,} cores"
        servers = [_servers(g.cores, n) for n in _ends(cores_per_server)]
    saved = gain = None
    if m["direct_ms"] is not None:
        d = m["direct_ms"]
        # Saved: the cheapest service against the dearest in-process is the high end, and back.
        saved = [
            d.value - service.value,
            d.low - (service.high if service.high is not None else service.value),
            (d.high or d.value) - service.low,
        ]
        gain = [
            (g.client_ms + d.value) / per_core.value - 1,
            (g.client_ms + d.low) / per_core.high - 1,
            (g.client_ms + (d.high or d.value)) / per_core.low - 1,
        ]
        if g.event_rate is not None:
            need_in = [g.event_rate * (g.client_ms + x) / 1e3 for x in (d.value, d.low, d.high or d.value)]
    network = _trio(lambda u, _: u * per_event_bytes * 8 / 1e9, usable) if per_event_bytes else None
    return Sizing(
        subject=m["subject"],
        batching=m["batching"],
        usable_eps=[usable.value, usable.low, usable.high],
        limited_by=limited_by,
        cores_per_server=cores_per_server,
        servers=servers,
        servers_for=servers_for,
        cores_needed_offloaded=need_off,
        cores_needed_in_process=need_in,
        saved_ms_per_event=saved,
        farm_gain=gain,
        network_gbps=network,
    )


def _ends(trio) -> list:
    """The value, then the ends swapped for a quantity that falls as this one rises (servers = need / capacity)."""
    value, low, high = (trio.value, trio.low, trio.high) if isinstance(trio, Span) else trio
    return [value, high, low]


def _servers(need: float, per_server: float | None) -> int | None:
    if per_server is None:
        return None  # no upper end measured: the fewest servers can't be said
    return max(1, math.ceil(need / per_server)) if per_server > 0 else None
