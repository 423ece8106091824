"""Machines without a program, faked on any machine: a PATH that holds everything but it.

Tests of the "without h2load" or "without a container engine" paths used to skip wherever the
program was installed, so CI (which installs both) never ran them. These helpers take the program
away instead: a folder of links to every program on the current PATH except the named ones, put
in PATH's place, so that ``shutil.which`` (and any child process) finds all the rest as before.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# What a container engine brings: with none of these on PATH, the docker backend has no engine.
DOCKER = ("docker", "docker-compose", "dockerd", "podman")


def path_without(folder: Path, *names: str) -> str:
    """A PATH (one folder) that finds every program the current PATH finds, except ``names``."""
    folder.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            # The first folder on PATH wins, as it does for the shell.
            if entry.name in names or link.is_symlink() or link.exists() or entry.is_dir():
                continue
            if os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(folder)


def take_away(monkeypatch: pytest.MonkeyPatch, folder: Path, *names: str) -> None:
    """Run the rest of the test (and its child processes) on a PATH without ``names``."""
    monkeypatch.setenv("PATH", path_without(folder, *names))
    for name in names:
        assert shutil.which(name) is None, f"{name} still found on the faked PATH"


@pytest.fixture
def no_h2load(monkeypatch, tmp_path):
    """This machine as one without h2load: PATH without it, and axon's cached lookup forgotten."""
    from axon.engines import base

    take_away(monkeypatch, tmp_path / "bin-without-h2load", base.H2LOAD)
    base.h2load_version.cache_clear()
    assert base.h2load_version() is None
    yield
    base.h2load_version.cache_clear()  # before PATH comes back: the next lookup sees the real one


@pytest.fixture
def no_docker(monkeypatch, tmp_path):
    """This machine as one without a container engine: PATH without docker or docker-compose."""
    monkeypatch.delenv("AXON_COMPOSE", raising=False)
    take_away(monkeypatch, tmp_path / "bin-without-docker", *DOCKER)
