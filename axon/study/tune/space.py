"""The search space: which knobs take which values, from CLI lists or a TOML file.

A candidate is a :class:`axon.offline.repository.ServingOptions`: the same value the repository writer
turns into config.pbtxt, so the winner's file is built from exactly what was measured. Knobs a
space leaves out keep the seed's (the served config's) value.

A space file is TOML with one list per knob, for example::

    instances = [1, 2, 3]
    delay_us = [0, 100, 500, 1000]
    preferred = ["none", "64/128/256"]
    max_batch = [64, 256]
    max_queue = [0, 256]      # the dynamic batcher's queue bound (0: none); a full queue rejects
    queue_timeout_us = [0, 20000]  # the queue's timeout (0: none); a request queued longer is rejected
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from axon.errors import AxonError
from axon.offline.repository import ServingOptions

# knob name -> ServingOptions field; the order is the coordinate search's order.
KNOBS: dict[str, str] = {
    "instances": "instances",
    "delay_us": "max_queue_delay_us",
    "preferred": "preferred_batch_sizes",
    "max_batch": "max_batch_size",
    "max_queue": "max_queue_size",  # 0: no bound (the seed's)
    # 0: none. On Triton 2.51 the time bound shed overload where the size bound stalled the
    # batcher, yet stalled a closed loop that was not overloaded (docs/overload.md): only a
    # measurement under the user's load decides, so a search of queue policies wants this knob.
    "queue_timeout_us": "queue_timeout_us",
}
BATCHING_KNOBS = ("delay_us", "preferred", "max_batch", "max_queue", "queue_timeout_us")  # meaningless without dynamic batching
NO_PREFERRED = "none"
MAX_INSTANCES = 64
MAX_DELAY_US = 1_000_000
MAX_BATCH = 65_536
MAX_QUEUE = 1_000_000
MAX_QUEUE_TIMEOUT_US = 60_000_000
# Used when neither flags nor a file name a knob: the knobs the config probe showed matter.
DEFAULT_SPACE: dict[str, tuple] = {"instances": (1, 2, 3), "delay_us": (0, 100, 500, 1000)}


def _whole(knob: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise AxonError(f"{knob}: expected a whole number, got {value!r}") from None
    if not low <= value <= high:
        raise AxonError(f"{knob}: {value} is out of range [{low}, {high}]")
    return value


def _preferred(value: object) -> tuple[int, ...]:
    """``none``, ``64/128/256`` or a TOML list of sizes."""
    if isinstance(value, (list, tuple)):
        parts: list[object] = list(value)
    elif str(value).strip().lower() == NO_PREFERRED:
        return ()
    else:
        parts = [p for p in str(value).split("/") if p.strip()]
    if not parts:
        raise AxonError(f"preferred: expected 'none' or sizes like 64/128/256, got {value!r}")
    return tuple(_whole("preferred", p, 1, MAX_BATCH) for p in parts)


PARSERS = {
    "instances": lambda v: _whole("instances", v, 1, MAX_INSTANCES),
    "delay_us": lambda v: _whole("delay_us", v, 0, MAX_DELAY_US),
    "preferred": _preferred,
    "max_batch": lambda v: _whole("max_batch", v, 1, MAX_BATCH),
    "max_queue": lambda v: _whole("max_queue", v, 0, MAX_QUEUE),
    "queue_timeout_us": lambda v: _whole("queue_timeout_us", v, 0, MAX_QUEUE_TIMEOUT_US),
}


def label(options: ServingOptions, batching: bool = True) -> str:
    """A short name, e.g. ``2 inst, 100 µs, pref 64/128/256, max 256``."""
    if not batching:
        return f"{options.instances} inst"
    preferred = "/".join(map(str, options.preferred_batch_sizes)) or NO_PREFERRED
    queue = f", queue {options.max_queue_size}" if options.max_queue_size else ""
    queue += f", timeout {options.queue_timeout_us} µs" if options.queue_timeout_us else ""
    return f"{options.instances} inst, {options.max_queue_delay_us} µs, pref {preferred}, max {options.max_batch_size}{queue}"


def knobs_of(options: ServingOptions) -> dict:
    return {knob: getattr(options, field) for knob, field in KNOBS.items()}


@dataclass(frozen=True)
class Space:
    """Values per knob (in the user's order, duplicates dropped) around a seed config."""

    seed: ServingOptions
    values: Mapping[str, tuple]
    batching: bool = True

    @property
    def size(self) -> int:
        """Candidates in the full grid (the seed counted once, whether or not it is on the grid)."""
        return len(self.grid())

    def with_knob(self, options: ServingOptions, knob: str, value) -> ServingOptions:
        return replace(options, **{KNOBS[knob]: value})

    def grid(self) -> list[ServingOptions]:
        """The seed first, then every combination of the knobs' values."""
        knobs = list(self.values)
        out = [self.seed]
        for combo in itertools.product(*(self.values[k] for k in knobs)):
            options = self.seed
            for knob, value in zip(knobs, combo):
                options = self.with_knob(options, knob, value)
            if options not in out:
                out.append(options)
        return out

    def as_dict(self) -> dict:
        return {"seed": knobs_of(self.seed), "values": {k: list(v) for k, v in self.values.items()}, "batching": self.batching}


def parse(given: Mapping[str, object | None], batching: bool = True) -> dict[str, tuple]:
    """Knob -> validated values, in the coordinate search's order. ``given`` maps knob -> raw
    values (None: not given); nothing given means :data:`DEFAULT_SPACE`.

    Raises AxonError for an unknown knob, a knob with no values, a value out of range, or a
    batching knob on a model without dynamic batching. Needs no server: run it before one starts.
    """
    unknown = sorted(set(given) - set(KNOBS))
    if unknown:
        raise AxonError(f"unknown knob(s) {', '.join(map(repr, unknown))}; known: {', '.join(KNOBS)}")
    chosen = {k: v for k, v in given.items() if v is not None}
    if not chosen:
        chosen = {k: v for k, v in DEFAULT_SPACE.items() if batching or k not in BATCHING_KNOBS}
    values: dict[str, tuple] = {}
    for knob in KNOBS:  # the coordinate search's order, whatever order the file used
        if knob not in chosen:
            continue
        raw = chosen[knob]
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise AxonError(f"{knob}: expected a list of values, got {raw!r}")
        parsed = list(dict.fromkeys(PARSERS[knob](v) for v in raw))
        if not parsed:
            raise AxonError(f"empty space: knob {knob!r} has no values")
        if not batching and knob in BATCHING_KNOBS:
            raise AxonError(f"knob {knob!r} needs dynamic batching, and the served config has none (tune instances only)")
        values[knob] = tuple(parsed)
    return values


def build(seed: ServingOptions, values: Mapping[str, tuple], batching: bool = True) -> Space:
    """The space around the served config's knobs; refused when the seed is its only candidate."""
    if not batching:
        parse(dict(values), batching=False)  # a batching knob on a model that does not batch
    space = Space(seed, dict(values), batching)
    if space.size < 2:
        raise AxonError("empty space: every value given is the seed's own, so there is nothing to compare with the default")
    return space


def read_file(path: Path) -> dict[str, list]:
    """Knob lists from a TOML space file; any problem reading it is one AxonError line."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise AxonError(f"cannot read space file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AxonError(f"space file {path} is not valid TOML: {exc}") from None
    if not data:
        raise AxonError(f"empty space: {path} names no knobs")
    return data


def split_list(text: str) -> list[str]:
    """A CLI list: ``1,2,3`` or ``none,64/128/256``; an empty list is kept empty (and refused later).

    An empty item ("1,,4") is a typo, refused as the CLI's number lists refuse it: a knob value
    silently dropped would change what is searched.
    """
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        return []
    if not all(parts):
        raise AxonError(f"empty item in {text!r}: expected comma-separated values, e.g. 1,2,3")
    return parts
