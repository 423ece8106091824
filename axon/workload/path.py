"""A trigger path: what one event calls, step after step, on one shared server.

A path file (TOML)::

    name = "hlt-demo"
    [[steps]]                                  # steps run in order
    calls = [{ model = "v1", rows = 1 }]
    [[steps]]                                  # calls inside one step run concurrently
    calls = [{ model = "v2", rows = 16 }, { model = "v1", rows = 4 }]
    client_ms = 0.5                            # optional: CPU the trigger spends before this step

A call names a served model (``model``, v1/v2 or any served name) or the user's ONNX file
(``onnx = "PATH"``, relative to the path file), and the rows it sends. Every mistake is one
line naming the file and the line it is on, before any server starts.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from axon.errors import AxonError
from axon.workload.signature import served_name_of

STEP_KEYS = ("calls", "client_ms")
CALL_KEYS = ("model", "onnx", "rows")
TOP_KEYS = ("name", "steps")


@dataclass(frozen=True)
class Call:
    model: str  # the served name (for an onnx call: the file's stem, or `model` if given)
    rows: int
    onnx: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.model}×{self.rows}"


@dataclass(frozen=True)
class Step:
    calls: tuple[Call, ...]
    client_ms: float = 0.0


@dataclass(frozen=True)
class TriggerPath:
    name: str
    steps: tuple[Step, ...]
    source: Path

    @property
    def models(self) -> list[str]:
        """Every model the path calls, in first-call order."""
        return list(dict.fromkeys(c.model for s in self.steps for c in s.calls))

    def calls_per_event(self) -> dict[str, int]:
        """Calls per event by model: what Triton must count per completed event."""
        out: dict[str, int] = {}
        for step in self.steps:
            for call in step.calls:
                out[call.model] = out.get(call.model, 0) + 1
        return out

    def as_record(self) -> dict:
        return {
            "name": self.name,
            "file": str(self.source),
            "steps": [
                {
                    "client_ms": s.client_ms,
                    "calls": [{"model": c.model, "rows": c.rows, **({"onnx": str(c.onnx)} if c.onnx else {})} for c in s.calls],
                }
                for s in self.steps
            ],
        }


def _step_lines(text: str) -> list[int]:
    """The line number of each ``[[steps]]`` header, in order (1-based)."""
    return [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"\s*\[\[\s*steps\s*\]\]", line)]


def _key_line(text: str, start: int, key: str) -> int:
    """The first line at or after ``start`` that sets ``key`` (for a message); ``start`` if none."""
    lines = text.splitlines()
    for i in range(max(start - 1, 0), len(lines)):
        if i > start - 1 and re.match(r"\s*\[", lines[i]):
            break
        if re.search(rf"\b{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start


def load(path: Path, served_name=lambda s: s) -> TriggerPath:
    """Read and check a path file; ``served_name`` maps what a user wrote (v1) to a served name."""
    path = Path(path)
    where = f"--path {path}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AxonError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AxonError(f"{where}: cannot read it ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AxonError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise AxonError(
            f"{where}, line {_key_line(text, 1, unknown[0])}: unknown key {unknown[0]!r} (a path has: {', '.join(TOP_KEYS)})"
        )
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise AxonError(f"{where}, line {_key_line(text, 1, 'name')}: name must be a non-empty string")
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise AxonError(f'{where}: the path has no steps: add at least one [[steps]] with calls = [{{ model = "v1", rows = 1 }}]')
    headers = _step_lines(text)
    steps = []
    for index, raw in enumerate(raw_steps):
        line = headers[index] if index < len(headers) else 1
        here = f"{where}, line {line} (step {index + 1})"
        if not isinstance(raw, dict):
            raise AxonError(f"{here}: a step is a table with calls = [...]")
        extra = sorted(set(raw) - set(STEP_KEYS))
        if extra:
            raise AxonError(
                f"{where}, line {_key_line(text, line, extra[0])} (step {index + 1}): unknown key {extra[0]!r} (a step has: {', '.join(STEP_KEYS)})"
            )
        client_ms = raw.get("client_ms", 0.0)
        if isinstance(client_ms, bool) or not isinstance(client_ms, (int, float)) or client_ms < 0:
            raise AxonError(
                f"{where}, line {_key_line(text, line, 'client_ms')} (step {index + 1}): client_ms must be a number >= 0, got {client_ms!r}"
            )
        raw_calls = raw.get("calls")
        if not isinstance(raw_calls, list) or not raw_calls:
            raise AxonError(f"{where}, line {_key_line(text, line, 'calls')} (step {index + 1}): the step has no calls")
        calls = []
        for j, c in enumerate(raw_calls):
            at = f"{where}, line {_key_line(text, line, 'calls')} (step {index + 1}, call {j + 1})"
            if not isinstance(c, dict):
                raise AxonError(f"{at}: a call is {{ model = NAME, rows = N }} or {{ onnx = PATH, rows = N }}")
            bad = sorted(set(c) - set(CALL_KEYS))
            if bad:
                raise AxonError(f"{at}: unknown key {bad[0]!r} (a call has: {', '.join(CALL_KEYS)})")
            rows = c.get("rows", 1)
            if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
                raise AxonError(f"{at}: rows must be a whole number > 0, got {rows!r}")
            onnx = c.get("onnx")
            if onnx is not None:
                if not isinstance(onnx, str):
                    raise AxonError(f"{at}: onnx must be a file path")
                file = (path.parent / onnx).resolve()
                if not file.is_file():
                    raise AxonError(f"{at}: onnx {onnx!r}: no such file ({file})")
                model = c.get("model") or served_name_of(file)
                calls.append(Call(str(model), rows, file))
                continue
            model = c.get("model")
            if not isinstance(model, str) or not model:
                raise AxonError(f'{at}: a call names a model (model = "v1") or a file (onnx = "tagger.onnx")')
            calls.append(Call(served_name(model), rows))
        steps.append(Step(tuple(calls), float(client_ms)))
    onnx_of: dict[str, Path] = {}
    for call in (c for s in steps for c in s.calls):
        if call.onnx is not None and onnx_of.setdefault(call.model, call.onnx) != call.onnx:
            raise AxonError(f"{where}: two ONNX files would both be served as {call.model!r}: give one a model = name")
    return TriggerPath(name, tuple(steps), path)
