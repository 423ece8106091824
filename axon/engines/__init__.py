"""Stage 4, engines: what offers the load, and the one interface every engine implements.

May import: ``axon.records`` (stats), ``axon.serving``, ``axon.offline`` and the top-level helpers.
Never ``axon.case``, ``axon.verdicts``, ``axon.study`` or a face.
"""

from __future__ import annotations

from axon.engines.base import (  # noqa: F401 (the engines' public face)
    CLI_OPTIONS,
    ENGINES,
    H2LOAD,
    H2LOAD_INSTALL_HINT,
    H2LOAD_TLS_UNVERIFIED,
    EngineChoice,
    EngineRun,
    choose,
    h2load_version,
)
