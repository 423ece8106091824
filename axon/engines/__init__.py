"""Stage 3, engines: what offers the load, and the one interface every engine implements.

May import ``axon.serving``, ``axon.offline``, ``axon.records`` and the top-level helpers.
Never ``axon.case``, ``axon.verdicts``, ``axon.study`` or a face.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from axon.engines.base import (  # noqa: F401 (the engines' public face)
    CLI_OPTIONS,
    ENGINES,
    H2LOAD,
    H2LOAD_INSTALL_HINT,
    H2LOAD_TLS_UNVERIFIED,
    POISSON_ON_PYTHON,
    Engine,
    EngineChoice,
    EngineRun,
    Progress,
    Scrape,
    WorkerOutcome,
    Workload,
    choose,
    h2load_version,
)
from axon.errors import AxonError

if TYPE_CHECKING:
    from axon.engines.loadgen import LoadSpec


def engine_for(choice: EngineChoice, spec: LoadSpec, options: dict[str, str] = CLI_OPTIONS) -> Engine:
    """The engine object for a choice made by :func:`choose`, its shape of ``spec`` checked now."""
    # Imported here: each engine module imports this package's base.
    if choice.name == "native":
        if spec.mode == "closed":
            from axon.engines.native import NativeEngine, topology

            topology(spec.concurrency, spec.connections)  # connections must divide the concurrency
            return check_window(NativeEngine(), spec, options)
        from axon.engines.native_open import NativeOpenEngine, open_topology

        open_topology(spec.rate, spec.connections, spec.max_in_flight)  # the bound must cover every connection
        return check_window(NativeOpenEngine(), spec, options)
    if spec.connections is not None:
        raise AxonError(
            f"{options.get('connections', 'connections')} shapes the native engine's load; this case runs on the python engine"
        )
    from axon.engines.python import PythonEngine

    return check_window(PythonEngine(), spec, options)


def check_window(engine: Engine, spec: LoadSpec, options: dict[str, str] = CLI_OPTIONS) -> Engine:
    """``engine``, once ``spec``'s window is one it can time: a shorter one is refused with its
    minimum, before any work (a 0.01 s window once printed "3,600 req/s" from 36 requests)."""
    shortest = getattr(engine, "min_window_s", 0.0)
    if spec.requests is None and spec.duration_s < shortest:
        raise AxonError(
            f"{options.get('duration', 'a window of')} {spec.duration_s:g} s is shorter than the {engine.name} engine can time: "
            f"its shortest window is {shortest:g} s ({engine.min_window_why})"
        )
    return engine
