"""``python -m axon``: the same command line as ``axon``."""

from __future__ import annotations

import sys

from axon.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
