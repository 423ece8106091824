"""The servers a sizing measures against: the embedded Triton per batching mode, or the one at ``--url``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from axon.case import Target, check_path_served
from axon.serving import backends


@contextlib.contextmanager
def targets(
    choice, modes: list[str], url: str | None, metrics_url: str | None, log_dir: Path | None
) -> Iterator[dict[str, Target]]:
    """Every mode's server up and checked (each model of the path served, its rows within max batch), then yielded."""
    with contextlib.ExitStack() as stack:
        out = {}
        for mode in modes:
            server = backends.make_server(
                "external" if url else "embedded",
                batching=mode,
                models=None if url else choice.models,
                artifacts=choice.artifacts or Path("artifacts"),
                url=url,
                metrics_url=metrics_url,
                log_path=log_dir / f"tritonserver-batching-{mode}.log" if log_dir and not url else None,
            )
            if hasattr(server, "check_models"):
                server.check_models()
            if not url:
                print(f"starting embedded Triton (batching {mode})…", file=sys.stderr, flush=True)
            stack.enter_context(server)
            out[mode] = Target.of(server, mode)
            check_path_served(choice.path, out[mode])
        yield out
