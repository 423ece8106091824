"""What pytest-benchmark's gate (``--benchmark-compare-fail``) could tell from noise.

pytest-benchmark compares one statistic of the request latencies (``median:10%``, say) between
the saved run and this one. Requests within a run share its machine state, so that is one sample
a side however many requests it holds. The runs are the evidence: with ``--axon-repeat N`` each
side has N. This module states, for the pytest terminal summary, the smallest change those runs
could have told from noise with axon's own two-sample test (:func:`axon.verdicts.gate.detectable_change`).
"""

from __future__ import annotations

from axon.verdicts import gate, runs

# pytest-benchmark's fields -> the run-level value axon judges; the others are judged on p50.
FIELD_METRIC = {"median": "p50_ms", "mean": "mean_ms"}


def power_lines(
    fields: list[str], current: dict[str, dict | None], compared: dict[str, dict | None], alpha: float = gate.DEFAULT_ALPHA
) -> list[str]:
    """Lines for the terminal summary when pytest-benchmark gates; empty when no axon case is on both sides.

    Parameters
    ----------
    fields
        The fields of the ``--benchmark-compare-fail`` checks (``median``, ``mean``, ...).
    current, compared
        Case full name to its axon record (``extra_info["axon"]``), in this run and in the saved one.
    alpha
        The level of the run-level test (``axon compare``'s default).
    """
    both = sorted(
        name for name in set(current) & set(compared) if isinstance(current[name], dict) and isinstance(compared[name], dict)
    )
    if not both:
        return []
    field = fields[0] if fields else "median"
    metric = FIELD_METRIC.get(field, "p50_ms")
    verdicts = []
    for name in both:
        old, new = runs.runs_of_record(name, compared[name], "saved"), runs.runs_of_record(name, current[name], "now")
        if old and new:
            verdicts.append(gate.judge(name, old, new, metric, alpha=alpha))
    if not verdicts:
        return []
    on = "" if field in FIELD_METRIC else f" (judged on run p50: '{field}' has no run-level counterpart)"
    return [
        f"gate: --benchmark-compare-fail compares the {field} of each side's request latencies, pooled over its runs; it is not a significance test{on}",
        f"gate: {gate.power_line(verdicts, alpha)}",
    ]
