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
        from axon.engines.native import NativeEngine, topology

        if spec.mode == "closed":
            topology(spec.concurrency, spec.connections)  # connections must divide the concurrency
        else:
            from axon.engines.native_open import open_topology

            open_topology(spec.rate, spec.connections, spec.max_in_flight)  # the bound must cover every connection
        return NativeEngine()
    if spec.connections is not None:
        raise AxonError(f"{options.get('connections', 'connections')} shapes the native engine's load; this case runs on the python engine")
    from axon.engines.python import PythonEngine

    return PythonEngine()
