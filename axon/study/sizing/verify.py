"""``axon size --verify``: check a prediction with simulated trigger clients.

Each simulated client is a closed loop: it starts an event every ``cycle`` (thinking between),
as a trigger core starts one every ``client_ms + service_ms`` of its CPU. A farm's cores can't
all run on this machine, so Little's law scales them: ``clients = event rate x cycle``, so
fewer clients with a shorter cycle offer the same events per second. The clients run at 0.8x,
1.0x and 1.25x of the predicted count; p99 must hold at the first two (the 1.25x is reported).
"""

from __future__ import annotations

import math
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


def run(choice, target, m: Measured, s: Sizing, given: Given, duration_s: float, warmup_s: float, save) -> list[dict]:
    """One run per factor against ``target``; each record saved (``save``) as it ends, and summarised."""
    per_core_ms = given.client_ms + m["service_ms"].value
    out = []
    for factor in FACTORS:
        plan = client_plan(m, s, factor)
        print(f"verify {m['subject']} batching {m['batching']} at {factor:g}x: {plan.how(per_core_ms)}", file=sys.stderr)
        spec = LoadSpec(
            m["subject"], concurrency=plan.clients, duration_s=duration_s, warmup_s=warmup_s, engine="python", max_error_rate=0.0
        ).validate()
        record = run_path(choice.path, spec, target, choice.feed, choice.reference, choice.dataset, cycle_s=plan.cycle_ms / 1e3)
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
        print(f"  {factor:g}x: {'held' if held else 'did not hold'}: {why}", file=sys.stderr)
        out.append(
            {
                "subject": m["subject"],
                "batching": m["batching"],
                "factor": factor,
                "client_cores": plan.cores,
                "clients": plan.clients,
                "cycle_ms": plan.cycle_ms,
                "rate_eps": plan.rate_eps,
                "reached_eps": record["throughput_rps"],
                "p99_ms": record["latency_ms"].get("p99"),
                "held": held,
                "why": why,
                "judged": factor in JUDGED,
            }
        )
    return out


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
