"""Latency budgets: declared once (pyproject ``[[tool.axon.slo]]`` or a TOML file), checked per case.

A budget applies to the cases its selector picks::

    [[tool.axon.slo]]
    name = "trigger"
    batching = "on"          # optional selectors: model, batching, mode, min_/max_concurrency
    max_concurrency = 64
    p50_ms = 7.0             # optional limits: p50_ms, p90_ms, p95_ms, p99_ms, p999_ms,
    p99_ms = 25.0            #   max_error_rate, max_mismatches, min_throughput_rps
    max_error_rate = 0.0
    max_mismatches = 0
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from axon.errors import AxonError
from axon.names import served_name

SELECTORS = ("model", "batching", "mode", "min_concurrency", "max_concurrency")
LATENCY_LIMITS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms")
OTHER_LIMITS = ("max_error_rate", "max_mismatches", "min_throughput_rps")


@dataclass(frozen=True)
class Budget:
    name: str
    selector: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)

    def applies_to(self, result: dict) -> bool:
        s = self.selector
        load = result["load"]
        concurrency = load.get("concurrency")
        checks = [
            "model" not in s or served_name(str(s["model"])) == result["model"],
            "batching" not in s or s["batching"] == result.get("batching"),
            "mode" not in s or s["mode"] == load["mode"],
            "min_concurrency" not in s or (concurrency is not None and concurrency >= s["min_concurrency"]),
            "max_concurrency" not in s or (concurrency is not None and concurrency <= s["max_concurrency"]),
        ]
        return all(checks)


def case_label(result: dict) -> str:
    load = result["load"]
    where = f"c={load['concurrency']}" if load["mode"] == "closed" else f"rate={load['rate']:g}/s"
    return f"{result['model']}, batching {result.get('batching') or '?'}, {where}"


def violations(result: dict, budgets: list[Budget]) -> list[str]:
    """Every broken limit of every budget that covers the result, as a readable message."""
    out = []
    label = case_label(result)
    requests = result["requests"]
    error_rate = requests["failed"] / requests["sent"] if requests["sent"] else 1.0
    for budget in budgets:
        if not budget.applies_to(result):
            continue
        for key, limit in budget.limits.items():
            if key in LATENCY_LIMITS:
                value = result["latency_ms"][key.removesuffix("_ms")]
                if not value < limit:
                    out.append(f"{key.removesuffix('_ms')} {value:.2f} ms > budget {limit:.2f} ms ({label}) [{budget.name}]")
            elif key == "max_error_rate" and error_rate > limit:
                out.append(f"error rate {error_rate:.2%} > budget {limit:.2%} ({label}) [{budget.name}]")
            elif key == "max_mismatches" and result["correctness"]["mismatches"] > limit:
                out.append(f"{result['correctness']['mismatches']} correctness mismatches > budget {limit} ({label}) [{budget.name}]")
            elif key == "min_throughput_rps" and result["throughput_rps"] < limit:
                out.append(f"throughput {result['throughput_rps']:.0f} req/s < budget {limit:.0f} req/s ({label}) [{budget.name}]")
    return out


def covered(result: dict, budgets: list[Budget]) -> bool:
    return any(b.applies_to(result) for b in budgets)


def parse_budgets(entries: list[dict], source: str) -> list[Budget]:
    budgets = []
    for i, entry in enumerate(entries):
        unknown = set(entry) - set(SELECTORS) - set(LATENCY_LIMITS) - set(OTHER_LIMITS) - {"name"}
        if unknown:
            raise AxonError(f"{source}: SLO #{i + 1} has unknown keys {sorted(unknown)}")
        for key, value in entry.items():
            if key in LATENCY_LIMITS + OTHER_LIMITS + ("min_concurrency", "max_concurrency") and not isinstance(value, (int, float)):
                raise AxonError(f"{source}: SLO #{i + 1}: {key} must be a number, got {value!r}")
        budgets.append(
            Budget(
                name=str(entry.get("name", f"slo-{i + 1}")),
                selector={k: entry[k] for k in SELECTORS if k in entry},
                limits={k: entry[k] for k in LATENCY_LIMITS + OTHER_LIMITS if k in entry},
            )
        )
    return budgets


def load_budgets(path: Path) -> list[Budget]:
    """Budgets from a pyproject.toml (``[[tool.axon.slo]]``) or a plain TOML file (``[[slo]]``)."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AxonError(f"cannot read SLO file {path}: {exc}") from None
    entries = document.get("tool", {}).get("axon", {}).get("slo") if "tool" in document else document.get("slo")
    return parse_budgets(entries or [], str(path))
