"""Context checks: are two sets of runs measured under the same conditions?

A 20% change means little when the machine, the load engine or the dataset changed with it.
Each run's context is a few fields of its record; fields missing on either side (older files)
are not compared. A difference is a warning line by default and an error with ``--strict``.
"""

from __future__ import annotations

from collections.abc import Iterable

from axon.errors import AxonError

# Shown name -> path into the result record.
FIELDS: dict[str, tuple[str, ...]] = {
    "cpu": ("machine", "cpu"),
    "cores": ("machine", "cores"),
    "engine": ("engine", "name"),
    "dataset": ("dataset", "name"),
    "dataset rows": ("dataset", "rows"),
    "dataset seed": ("dataset", "seed"),
    "server backend": ("server", "backend"),
    "server version": ("server", "version"),
    "batching": ("batching",),
    "axon version": ("axon_version",),
}


def context_of(record: dict) -> dict[str, object]:
    """The context fields present in one result record."""
    out: dict[str, object] = {}
    for name, path in FIELDS.items():
        value: object = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            out[name] = value
    return out


def _values(records: Iterable[dict]) -> dict[str, set]:
    seen: dict[str, set] = {}
    for record in records:
        for name, value in context_of(record).items():
            seen.setdefault(name, set()).add(str(value))
    return seen


def differences(case: str, old: Iterable[dict], new: Iterable[dict]) -> list[str]:
    """One line per context field whose values differ between the old and the new records."""
    a, b = _values(old), _values(new)
    return [
        f"{case}: {name} differs: {', '.join(sorted(a[name]))} (old) vs {', '.join(sorted(b[name]))} (new)"
        for name in FIELDS
        if name in a and name in b and a[name] != b[name]
    ]


def changes_over(case: str, records: list[tuple[str, dict]]) -> list[str]:
    """Where the context changes along a history of (source, record), one line per change."""
    out = []
    previous: dict[str, object] = {}
    for source, record in records:
        current = context_of(record)
        for name, value in current.items():
            if name in previous and previous[name] != value:
                out.append(f"{case}: {name} changes from {previous[name]} to {value} at {source}")
        previous.update(current)
    return out


def enforce(lines: list[str], strict: bool) -> list[str]:
    """Raise on any difference when ``strict``; else return the lines as warnings."""
    if strict and lines:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise AxonError(f"context differs, refusing to compare with --strict: {lines[0]}{more}")
    return [f"warning: {line}" for line in lines]
