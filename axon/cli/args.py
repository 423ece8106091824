"""Option types and list parsers shared by every command: each check written once.

A bad value is an ``argparse.ArgumentTypeError``, which the parser turns into its short usage
line and one ``error:`` line, exit 2, before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from axon.names import MODEL_PREFIX, VERSIONS

# The widest concurrency a list option accepts: beyond it h2load's streams and the python
# engine's coroutines stop modelling a client farm and start measuring the client.
MAX_CONCURRENCY = 1024


class ShortUsageParser(argparse.ArgumentParser):
    """On a usage error, the one-line usage and the error, not the whole usage block.

    argparse prints every option of a command before the line that matters; with 30 options
    that line scrolls away. ``axon CMD --help`` still shows everything.
    """

    def error(self, message: str):
        print(f"usage: {self.prog} [options] (see {self.prog} --help)\n{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except where there is none to show (None, a flag's False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def _positive(text: str, convert: Callable[[str], float], expected: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    return _positive(text, int, "a whole number")


def positive_float(text: str) -> float:
    return _positive(text, float, "a number")


def fraction_of_one(text: str) -> float:
    """A fraction in [0, 1] (an error rate): 2 would silently mean "never fail"."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def int_list(low: int = 1, high: int | None = None, what: str = "every value") -> Callable[[str], list[int]]:
    """A parser of comma-separated whole numbers in [low, high]; an empty item is an error.

    "1,,4" is a typo, not "1,4": nothing silently changes what is measured.
    """

    def parse(text: str) -> list[int]:
        items = [v.strip() for v in text.split(",")]
        if any(not v for v in items):
            raise argparse.ArgumentTypeError(f"empty item in {text!r}: expected comma-separated whole numbers, e.g. 1,4,16")
        try:
            values = [int(v) for v in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
        if any(v < low or (high is not None and v > high) for v in values):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {text!r}")
        return values

    return parse


concurrency_list = int_list(1, MAX_CONCURRENCY, "concurrencies")


def processes(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def model_versions(text: str) -> list[str]:
    versions = [v.strip().removeprefix(MODEL_PREFIX) for v in text.split(",") if v.strip()]
    unknown = [v for v in versions if v not in VERSIONS]
    if not versions or unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown or text!r}; known: {','.join(VERSIONS)}")
    return versions


def add_queue_options(p) -> None:
    """``--max-queue-size`` and ``--queue-timeout-us``: the dynamic batcher's queue bound and policy (train, serve)."""
    p.add_argument(
        "--max-queue-size",
        type=_non_negative,
        default=0,
        help="batching on: the dynamic batcher's queue bound; a request arriving to a full queue is rejected at once "
        "(Triton: 'Exceeds maximum queue size'), so overload becomes rejections, not server memory (0: no bound, the seed's). "
        "Measured on Triton 2.51 (docs/overload.md): with it set, the batcher stalls in 0.5 s steps; measure either bound with axon tune before deploying it",
    )
    p.add_argument(
        "--queue-timeout-us",
        type=_non_negative,
        default=0,
        help="batching on: reject a request that waited in the queue longer than this, e.g. 20000 (0: no timeout); "
        "on Triton 2.51 it shed overload better than --max-queue-size, but stalled a closed loop that was not overloaded (docs/overload.md)",
    )


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_size(text: str) -> int:
    """``--max-server-memory``: bytes from "8G", "512M", "40%" (of this machine's memory), or "off" (0).

    Checked here, so a typo is a usage error before any server starts.
    """
    from axon.serving.watch import machine_memory_bytes

    said = text.strip().upper().removesuffix("B").removesuffix("I")  # 8G, 8GB, 8GiB alike
    if said == "OFF":
        return 0
    try:
        if said.endswith("%"):
            share = float(said[:-1])
            total = machine_memory_bytes()
            if total is None:
                raise argparse.ArgumentTypeError("this machine's memory can't be read: give a size (e.g. 8G)")
            if not 0 < share <= 100:
                raise argparse.ArgumentTypeError(f"a share of the machine's memory must be in (0, 100]%, got {text!r}")
            return int(total * share / 100)
        unit = said[-1] if said and said[-1] in _SIZE_UNITS else ""
        value = float(said[: len(said) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 8G, 512M or 40% (of this machine's memory), or off; got {text!r}"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r} (off turns the guard off)")
    return int(value * _SIZE_UNITS[unit])


MAX_SERVER_MEMORY_HELP = (
    "stop the load, and mark the run incomplete, when the memory of the server axon started (tritonserver and its stubs) passes this: "
    "a size (8G, 512M), a share of this machine's memory (40%%), or off (default: half of this machine's memory, or of its cgroup's limit)"
)
