"""Latency budgets: declared once (pyproject ``[[tool.axon.slo]]`` or a TOML file), checked per case.

A budget applies to the cases its selector picks::

    [[tool.axon.slo]]
    name = "trigger"
    batching = "on"          # optional selectors: model, path, batching, mode, min_/max_concurrency
                             #   (with `path`, `model` picks that model's calls in the path: p50_ms... limit those)
    max_concurrency = 64
    p50_ms = 7.0             # optional limits: p50_ms, p90_ms, p95_ms, p99_ms, p999_ms, event_p50_ms, event_p99_ms (paths),
    p99_ms = 25.0            #   max_error_rate, max_mismatches, min_throughput_rps
    max_error_rate = 0.0
    max_mismatches = 0
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from axon.errors import AxonError
from axon.names import VERSIONS, model_name, served_name
from axon.records.schema import case_label

SELECTORS = ("model", "path", "batching", "mode", "min_concurrency", "max_concurrency")
LATENCY_LIMITS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms")
# A trigger path's budget is on the event (its record's latency is the event's): these limits,
# or a `path = NAME` selector, make a budget cover paths only, never a single model's case.
EVENT_LIMITS = ("event_p50_ms", "event_p99_ms")
PATH_PREFIX = "path:"
OTHER_LIMITS = ("max_error_rate", "max_mismatches", "min_throughput_rps")
LIMITS = LATENCY_LIMITS + EVENT_LIMITS + OTHER_LIMITS
KNOWN_KEYS = ("name", *SELECTORS, *LIMITS)


@dataclass(frozen=True)
class Budget:
    name: str
    selector: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)

    def applies_to(self, result: dict) -> bool:
        load = result["load"]
        # In a path's budget, `model` picks that model's calls: the path must call it.
        if self.limits_calls(result) and served_name(str(self.selector["model"])) not in (
            (result.get("path") or {}).get("models") or {}
        ):
            return False
        return self.covers(result["model"], result.get("batching"), load["mode"], load.get("concurrency"))

    def limits_calls(self, result: dict) -> bool:
        """A budget with both ``path`` and ``model`` limits that model's calls inside the path."""
        return "path" in self.selector and "model" in self.selector and result["model"].startswith(PATH_PREFIX)

    def call_latency_ms(self, result: dict, percentile: str) -> float | None:
        """A path budget's ``model`` limit reads that model's calls: the worst of its calls' percentile."""
        model = served_name(str(self.selector["model"]))
        values = [c["latency_ms"][percentile] for c in result["path"]["calls"] if c["model"] == model and c.get("latency_ms")]
        return max(values) if values else None

    def covers(self, model: str, batching: str | None, mode: str, concurrency: int | None) -> bool:
        """Whether this budget's selector takes a case with these coordinates."""
        s = self.selector
        is_path = model.startswith(PATH_PREFIX)
        for_paths = "path" in s or any(k in EVENT_LIMITS for k in self.limits)
        checks = [
            for_paths == is_path or not for_paths,
            "path" not in s or model == PATH_PREFIX + str(s["path"]),
            "model" not in s
            or ("path" in s and is_path)
            or served_name(str(s["model"])) == model,  # with path: its calls (applies_to)
            "batching" not in s or s["batching"] == batching,
            "mode" not in s or s["mode"] == mode,
            "min_concurrency" not in s or (concurrency is not None and concurrency >= s["min_concurrency"]),
            "max_concurrency" not in s or (concurrency is not None and concurrency <= s["max_concurrency"]),
        ]
        return all(checks)


@dataclass(frozen=True)
class LatencyBudget:
    """A p50/p99 pair that a measured point holds or breaks (``axon tune``, the study's capacity search)."""

    p50_ms: float
    p99_ms: float

    def holds(self, p50: float, p99: float) -> bool:
        return p50 <= self.p50_ms and p99 <= self.p99_ms


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
            if key in LATENCY_LIMITS and budget.limits_calls(result):
                model = served_name(str(budget.selector["model"]))
                value = budget.call_latency_ms(result, key.removesuffix("_ms"))
                if value is None or not value < limit:
                    shown = "no answered call" if value is None else f"{value:.2f} ms"
                    out.append(
                        f"{model}'s calls {key.removesuffix('_ms')} {shown} > budget {limit:.2f} ms ({label}) [{budget.name}]"
                    )
            elif key in LATENCY_LIMITS or key in EVENT_LIMITS:
                value = result["latency_ms"][key.removesuffix("_ms").removeprefix("event_")]
                if not value < limit:
                    out.append(
                        f"{key.removesuffix('_ms').replace('_', ' ')} {value:.2f} ms > budget {limit:.2f} ms ({label}) [{budget.name}]"
                    )
            elif key == "max_error_rate" and error_rate > limit:
                out.append(f"error rate {error_rate:.2%} > budget {limit:.2%} ({label}) [{budget.name}]")
            elif key == "max_mismatches" and result["correctness"]["mismatches"] > limit:
                out.append(
                    f"{result['correctness']['mismatches']} correctness mismatches > budget {limit} ({label}) [{budget.name}]"
                )
            elif key == "min_throughput_rps" and result["throughput_rps"] < limit:
                out.append(
                    f"throughput {result['throughput_rps']:.0f} req/s < budget {limit:.0f} req/s ({label}) [{budget.name}]"
                )
    return out


def covered(result: dict, budgets: list[Budget]) -> bool:
    return any(b.applies_to(result) for b in budgets)


# Selector values a case can have: a budget selecting anything else would silently match nothing.
BATCHING_VALUES = ("on", "off")
MODE_VALUES = ("closed", "open")
KNOWN_MODELS = tuple(model_name(v) for v in VERSIONS)
# Where budgets live in each kind of file; any other key there is a misspelling.
PLAIN_TABLES = ("slo",)
PYPROJECT_KEYS = ("slo",)


def _is_number(value: object) -> bool:
    # bool is an int in Python, but `p50_ms = true` is a mistake, not a limit of 1 ms.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_limit(key: str, value: object) -> str | None:
    """Why a limit's value is unusable, or None."""
    if not _is_number(value):
        return f"{key} must be a number, got {value!r}"
    if not value >= 0:  # also rejects NaN
        return f"{key} must be >= 0, got {value!r}"
    if key == "max_error_rate" and value > 1:
        return f"max_error_rate is a fraction between 0 and 1, got {value!r}"
    return None


def _check_selector(key: str, value: object, models: Collection[str] | None) -> str | None:
    """Why a selector's value could never match a case (or is malformed), or None."""
    if key == "name" and not isinstance(value, str):
        return f"name must be a string, got {value!r}"
    if key == "batching" and value not in BATCHING_VALUES:
        return f"batching must be one of {', '.join(BATCHING_VALUES)}, got {value!r}"
    if key == "mode" and value not in MODE_VALUES:
        return f"mode must be one of {', '.join(MODE_VALUES)}, got {value!r}"
    if key == "path" and (not isinstance(value, str) or not value):
        return f"path must be a path's name (its file's name = ...), got {value!r}"
    if key == "model":
        if not isinstance(value, str):
            return f"model must be a model name, got {value!r}"
        if models is not None and served_name(value) not in models:
            return f"model {value!r} is not a known model; known: {', '.join(models)}"
    if key in ("min_concurrency", "max_concurrency") and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        return f"{key} must be a whole number >= 1, got {value!r}"
    return None


def _entry_problem(entry: object, models: Collection[str] | None) -> str | None:
    if not isinstance(entry, dict):
        return f"must be a table of keys, got {entry!r}"
    unknown = set(entry) - set(KNOWN_KEYS)
    if unknown:
        return f"unknown keys {sorted(unknown)}; known keys: {', '.join(KNOWN_KEYS)}"
    for key, value in entry.items():
        problem = _check_limit(key, value) if key in LIMITS else _check_selector(key, value, models)
        if problem:
            return problem
    low, high = entry.get("min_concurrency"), entry.get("max_concurrency")
    if low is not None and high is not None and low > high:
        return f"min_concurrency {low} > max_concurrency {high}: the budget would cover no case"
    return None


def parse_budgets(entries: list[dict], source: str, models: Collection[str] | None = KNOWN_MODELS) -> list[Budget]:
    """Validated budgets; raises AxonError, naming the entry, on anything that can't be meant.

    ``models`` are the model names a ``model`` selector may name (default: axon's own models);
    pass the served models for another server, or None to accept any name.
    """
    if not isinstance(entries, list):
        raise AxonError(f"{source}: SLOs must be an array of tables ([[slo]] or [[tool.axon.slo]]), got {entries!r}")
    budgets = []
    for i, entry in enumerate(entries):
        problem = _entry_problem(entry, models)
        if problem:
            label = f" ({entry['name']})" if isinstance(entry, dict) and "name" in entry else ""
            raise AxonError(f"{source}: SLO #{i + 1}{label}: {problem}")
        budgets.append(
            Budget(
                name=str(entry.get("name", f"slo-{i + 1}")),
                selector={k: entry[k] for k in SELECTORS if k in entry},
                limits={k: entry[k] for k in LIMITS if k in entry},
            )
        )
    return budgets


def _entries(document: dict, path: Path) -> list:
    """The SLO entries of a pyproject.toml (``[tool.axon]``) or a plain file (top level).

    Any other key where budgets live is an error: a misspelt ``[[slos]]`` would otherwise
    turn every budget off without a word.
    """
    if path.name == "pyproject.toml" or "tool" in document:
        axon = document.get("tool", {}).get("axon", {})
        where, known = "[tool.axon]", PYPROJECT_KEYS
    else:
        axon = document
        where, known = "the top level", PLAIN_TABLES
    unknown = sorted(set(axon) - set(known))
    if unknown:
        raise AxonError(
            f"{path}: unknown key(s) {unknown} in {where}; known: {', '.join(known)} (write budgets as [[slo]] in a plain file, [[tool.axon.slo]] in pyproject.toml)"
        )
    return axon.get("slo", [])


def load_budgets(path: Path, models: Collection[str] | None = KNOWN_MODELS) -> list[Budget]:
    """Budgets from a pyproject.toml (``[[tool.axon.slo]]``) or a plain TOML file (``[[slo]]``), validated."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AxonError(f"cannot read SLO file {path}: {exc}") from None
    return parse_budgets(_entries(document, path), str(path), models)
