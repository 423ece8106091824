"""pytest plugin (entry point ``axon`` in pyproject.toml): options, session-scoped Triton servers, and the ``axon_bench`` fixture.

``axon_bench(model, batching, concurrency=...)`` (or ``rate=...``) runs one load case, gives
pytest-benchmark the per-request latencies as its samples (so ``min``/``median``/``IQR`` in its
JSON are request latencies and ``--benchmark-compare-fail=median:10%`` gates on them), puts
axon's whole record in ``extra_info["axon"]``, and fails the case on a broken SLO budget.

One module per job, each holding its own hooks and fixtures: :mod:`.options` (the command line,
validated once, and the marks), :mod:`.containers` (pytest-docker's glue), :mod:`.servers` (the
models served and the session's server pool), :mod:`.fixture` (``axon_bench`` and the case's
verdict), :mod:`.summary` (the terminal's axon section).
"""

# pytest reads ``pytest_plugins`` from every plugin module it registers, the entry point
# included, and registers each module named there as a plugin of its own: their hooks and
# fixtures are found where they are defined, with no re-exports here, and `-p no:axon` still
# turns them all off (this module, which names them, is then never loaded).
pytest_plugins = [
    "axon.pytest_plugin.options",
    "axon.pytest_plugin.containers",
    "axon.pytest_plugin.servers",
    "axon.pytest_plugin.fixture",
    "axon.pytest_plugin.summary",
]
