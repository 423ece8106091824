"""Face: the ``axon`` command. :mod:`~axon.cli.main` holds the parser, exit codes and signals;
:mod:`~axon.cli.args` the shared option types and list parsers; one module per command.

May import anything below it; never the other face (the pytest plugin).
"""

from __future__ import annotations

from axon.cli.main import main  # noqa: F401 (the console script's entry point: axon.cli:main)
