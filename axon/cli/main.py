"""``axon`` command line: a thin shell over the library's functions.

User errors (:class:`axon.errors.AxonError`) print one line and exit with code 2; Ctrl-C exits
with 130 and SIGTERM with 143, each after whatever was running has cleaned up.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from axon.cli.args import ShortUsageParser
from axon.errors import EXIT_USAGE, AxonError

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


COMMANDS = ("train", "serve", "bench", "direct", "tune", "compare", "study", "size", "merge", "report")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from axon import version

    parser = ShortUsageParser(prog="axon", description="Measure ML inference served by NVIDIA Triton.")
    parser.add_argument("--version", action="version", version=f"axon {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ShortUsageParser)
    # One module per command, each with add_parser(sub) and command(args): imported here, so
    # that a command's heavy imports (torch, dask) happen only inside its command().
    for name in COMMANDS:
        importlib.import_module(f"axon.cli.{name}").add_parser(sub)
    return parser


class _Termination:
    """SIGTERM taken the way Ctrl-C is: as KeyboardInterrupt, so every ``with`` and ``finally``
    (servers stopped, temporary folders removed, partial results saved) runs, as it does not
    when Python dies of the default SIGTERM action.
    """

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum, frame) -> None:
        if self.received:
            return  # a second SIGTERM must not interrupt the cleanup the first one started
        self.received = True
        raise KeyboardInterrupt

    def install(self):
        try:
            return signal.signal(signal.SIGTERM, self)
        except ValueError:  # not the main thread (main() called from a test's thread): leave it
            return None


def main(argv: Sequence[str] | None = None) -> int:
    import os

    # gRPC's C core logs at INFO on some failures (a TLS handshake, say) over axon's own one-line
    # message; only its errors are shown unless the user asks for more.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    parser = build_parser()
    args = parser.parse_args(argv)
    termination = _Termination()
    previous = termination.install()
    try:
        return args.func(args)
    except AxonError as exc:
        if not getattr(exc, "said", False):
            print(f"axon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if termination.received:
            print("axon: terminated", file=sys.stderr)
            return EXIT_TERMINATED
        print("axon: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
