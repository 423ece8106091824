"""``axon size --verify``: check a prediction with simulated trigger clients.

Each simulated client is a closed loop: it starts an event every ``cycle`` (thinking between),
as a trigger core starts one every ``client_ms + service_ms`` of its CPU. A farm's cores can't
all run on this machine, so Little's law scales them: ``clients = event rate x cycle``, so
fewer clients with a shorter cycle offer the same events per second. The clients run at 0.8x,
1.0x and 1.25x of the predicted count; p99 must hold at the first two (the 1.25x is reported).
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass

from axon.case import run_path
from axon.engines.loadgen import LoadSpec
from axon.study.sizing.arithmetic import Given, Measured, Sizing

FACTORS = (0.8, 1.0, 1.25)
JUDGED = (0.8, 1.0)
MAX_CLIENTS = 64  # simulated clients in one event loop; more would only cost this machine's CPU
REACHED = 0.9  # a run offered less than this share of its rate can't vouch for it
CYCLES_PER_LATENCY = 2  # a client's cycle is at least twice the event's p99, so pacing holds


@dataclass(frozen=True)
class ClientPlan:
    factor: float
    cores: float  # the trigger cores this run stands for
    rate_eps: float  # the events per second they offer
    clients: int
    cycle_ms: float

    def how(self, per_core_ms: float) -> str:
        return (
            f"{self.cores:,.1f} trigger cores (an event every {per_core_ms:.3g} ms each) simulated by {self.clients} clients "
            f"(an event every {self.cycle_ms:.3g} ms each): {self.rate_eps:,.0f} events/s either way (Little's law: clients = rate x cycle)"
        )


def client_plan(m: Measured, s: Sizing, factor: float) -> ClientPlan:
    """Enough clients that each one's cycle outlasts an event's latency, at most MAX_CLIENTS."""
    rate = factor * s["usable_eps"][0]
    cores = factor * s["cores_per_server"][0]
    latency_ms = m["p99_at_capacity_ms"] or m["p99_budget_ms"]
    need = math.ceil(CYCLES_PER_LATENCY * rate * latency_ms / 1e3)
    clients = min(max(math.ceil(cores), need, 1), MAX_CLIENTS)
    return ClientPlan(factor, cores, rate, clients, clients / rate * 1e3)


def verdict(record: dict, plan: ClientPlan, budget_ms: float) -> tuple[bool, str]:
    """Whether p99 held at this count, and if not, why: the client, the server's rate, or queueing."""
    reached = record["throughput_rps"] / plan.rate_eps if plan.rate_eps else 0.0
    p99 = record["latency_ms"].get("p99")
    if not record["passed"]:
        return False, "; ".join(record["verdicts"] or [record["incomplete_reason"] or "failed"])
    if record["client"]["client_bound"] and (reached < REACHED or p99 is None or p99 > budget_ms):
        # A hot client delays its own sends and answers: its latencies are not the server's.
        return False, (
            f"client-bound: this machine's simulating client used {max(record['client']['cores_per_process']):.2f} of a core "
            f"({record['throughput_rps']:,.0f} of {plan.rate_eps:,.0f} events/s, p99 {p99:.1f} ms)"
        )
    if reached < REACHED:
        who = (
            "client-bound: this machine's simulating client ran out of CPU"
            if record["client"]["client_bound"]
            else "server-bound: the server answered slower than the clients asked"
        )
        return False, f"{who} ({record['throughput_rps']:,.0f} of {plan.rate_eps:,.0f} events/s reached)"
    if p99 is None or p99 > budget_ms:
        return False, f"queueing: p99 {p99:.1f} ms over the {budget_ms:g} ms budget at {record['throughput_rps']:,.0f} events/s"
    return True, f"p99 {p99:.1f} ms within {budget_ms:g} ms at {record['throughput_rps']:,.0f} events/s"


def run(
    choice, target, m: Measured, s: Sizing, given: Given, duration_s: float, warmup_s: float, repeat: int, save
) -> list[dict]:
    """Every factor ``repeat`` times, interleaved (0.8x, 1.0x, 1.25x, 0.8x, ...), against ``target``.

    A factor holds when at least half of its runs held, as a capacity does (one p99 from a few
    seconds of events is one noisy sample). Each record is saved (``save``) as it ends.
    """
    per_core_ms = given.client_ms + m["service_ms"].value
    plans = {factor: client_plan(m, s, factor) for factor in FACTORS}
    if "(events)" not in m["capacity_by"] and "(python)" not in m["capacity_by"]:
        print(
            f"axon: notice: the capacity was measured with {m['capacity_by']}; the verifying clients are axon's python event engine, "
            "whose CPU on a machine shared with the server is taken from the server: measure on the spot (no RESULTS) to verify with one client",
            file=sys.stderr,
        )
    for factor, plan in plans.items():
        print(f"verify {m['subject']} batching {m['batching']} at {factor:g}x: {plan.how(per_core_ms)}", file=sys.stderr)
    runs: dict[float, list[dict]] = {factor: [] for factor in FACTORS}
    for index in range(repeat):
        for factor, plan in plans.items():
            spec = LoadSpec(
                m["subject"],
                concurrency=plan.clients,
                duration_s=duration_s,
                warmup_s=warmup_s,
                engine="python",
                max_error_rate=0.0,
            ).validate()
            record = run_path(
                choice.path,
                spec,
                target,
                choice.feed,
                choice.reference,
                choice.dataset,
                repeat=(index, repeat) if repeat > 1 else None,
                cycle_s=plan.cycle_ms / 1e3,
            )
            held, why = verdict(record, plan, m["p99_budget_ms"])
            record["sizing"] = {
                "part": "verify",
                "factor": factor,
                "predicted_cores": s["cores_per_server"][0],
                "client_cores": plan.cores,
                "simulated_clients": plan.clients,
                "cycle_ms": plan.cycle_ms,
                "rate_eps": plan.rate_eps,
                "how": plan.how(per_core_ms),
                "held": held,
                "why": why,
                "judged": factor in JUDGED,
            }
            save(record)
            print(f"  {factor:g}x #{index + 1}: {'held' if held else 'did not hold'}: {why}", file=sys.stderr)
            runs[factor].append(record)
    return [_row(m, plans[factor], records) for factor, records in runs.items()]


def _row(m: Measured, plan: ClientPlan, records: list[dict]) -> dict:
    """One factor over its runs: held by majority; its median p99 and rate; why, from a run that did not hold."""
    held = [r["sizing"]["held"] for r in records]
    majority = 2 * sum(held) >= len(held)
    failing = [r["sizing"]["why"] for r in records if not r["sizing"]["held"]]
    p99s = [r["latency_ms"]["p99"] for r in records if r["latency_ms"].get("p99") is not None]
    return {
        "subject": m["subject"],
        "batching": m["batching"],
        "factor": plan.factor,
        "client_cores": plan.cores,
        "clients": plan.clients,
        "cycle_ms": plan.cycle_ms,
        "rate_eps": plan.rate_eps,
        "reached_eps": statistics.median(r["throughput_rps"] for r in records),
        "p99_ms": statistics.median(p99s) if p99s else None,
        "runs_held": f"{sum(held)}/{len(held)}",
        "held": majority,
        "why": (failing[0] if failing and not majority else records[0]["sizing"]["why"])
        + (f" ({sum(held)}/{len(held)} runs held)" if len(held) > 1 else ""),
        "judged": plan.factor in JUDGED,
    }


def conclusion(rows: list[dict]) -> tuple[bool, str]:
    """Confirmed when p99 held at 0.8x and 1.0x; else by how much the prediction was off, and why."""
    judged = {r["factor"]: r for r in rows if r["judged"]}
    over = next((r for r in rows if r["factor"] == max(FACTORS)), None)
    tail = (
        f"; at {over['factor']:g}x ({over['client_cores']:,.1f} cores) it {'held' if over['held'] else 'did not: ' + over['why']} (reported, not judged)"
        if over
        else ""
    )
    if all(r["held"] for r in judged.values()):
        return True, f"confirmed: p99 held at 0.8x and 1.0x of the predicted {judged[1.0]['client_cores']:,.1f} cores{tail}"
    if not judged[0.8]["held"]:
        return (
            False,
            f"NOT confirmed: p99 did not hold at 0.8x ({judged[0.8]['why']}): the prediction is high by more than 20%{tail}",
        )
    return (
        False,
        f"NOT confirmed: p99 held at 0.8x but not at 1.0x ({judged[1.0]['why']}): the prediction is high by up to 20%{tail}",
    )
