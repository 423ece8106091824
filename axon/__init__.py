"""axon: a test-and-measure suite for ML inference served by NVIDIA Triton."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The installed package's version, for ``axon --version`` and result records.

    Read from package metadata (pyproject.toml is the one place it is written), so it can't
    drift from what pip installed; "unknown" when axon runs from a tree that isn't installed.
    """
    try:
        return metadata.version("axon")
    except metadata.PackageNotFoundError:
        return "unknown"


__version__ = version()
