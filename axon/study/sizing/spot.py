"""A capacity measurement on the spot, when ``axon size`` is given no results.

The subject (a model as a one-call path, or a trigger path) runs on the event engine, open loop
at constant spacing, through the study's search (:func:`axon.study.plan.search_capacity`:
double, halve, bisect, then the boundary repeated). The python event engine offers at most a
few thousand events per second on our 2 cores: a model faster than that is measured better by
``axon study`` (h2load), whose folder ``axon size`` then reads. In-process CPU per event comes
from onnxruntime on each call's local model (:func:`axon.case.run_direct`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from axon.case import run_direct, run_path
from axon.engines.loadgen import LoadSpec
from axon.study.plan import search_capacity, within_budget

START_EPS = 200.0  # a compute-bound model holds hundreds; a light one is found by doubling
HIGHEST_EPS = 8_000.0  # beyond what the python event engine offers on 2 cores
BISECT_STEPS = 2


def measure(
    choice, targets: dict, budget_ms: float, duration_s: float, warmup_s: float, repeat: int, save: Callable[[dict], None]
) -> None:
    """Capacity per mode, then direct per call of the path; every record handed to ``save`` as it ends."""
    tag = {"part": "capacity", "plan": {"p99_budget_ms": budget_ms, "repeat": repeat}}
    for mode, target in targets.items():
        tried: dict[float, list[bool]] = {}

        def one(rate: float, target=target, mode=mode, tried=tried) -> bool:
            spec = LoadSpec(
                choice.name, rate=rate, duration_s=duration_s, warmup_s=warmup_s, engine="python", max_error_rate=0.0
            ).validate()
            record = run_path(choice.path, spec, target, choice.feed, choice.reference, choice.dataset)
            record["study"] = tag
            save(record)
            held = within_budget(record, budget_ms)
            tried.setdefault(rate, []).append(held)
            print(
                f"  capacity {choice.name} batching {mode}: {rate:,.0f} events/s: p99 {record['latency_ms']['p99']:.1f} ms, {'held' if held else 'did not hold'}",
                file=sys.stderr,
            )
            return held

        good, bad = search_capacity(lambda rate, one=one: one(rate) or one(rate), START_EPS, HIGHEST_EPS, BISECT_STEPS)
        for boundary in (good, bad):  # the boundary measured until each has `repeat` runs
            for _ in range(repeat - len(tried.get(boundary, [])) if boundary is not None else 0):
                one(boundary)
    done = set()
    for step in choice.path.steps:
        for call in step.calls:
            reference = choice.reference.get(call.model)
            if reference is None or (call.model, call.rows) in done:
                continue
            done.add((call.model, call.rows))
            for index in range(repeat):
                record = run_direct(
                    call.model,
                    reference,
                    choice.feed[call.model],
                    call.rows,
                    1,
                    duration_s / 2,
                    warmup_s / 2,
                    choice.dataset,
                    repeat=(index, repeat),
                )
                record["study"] = {**tag, "part": "direct"}
                save(record)
