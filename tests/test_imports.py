"""Benchmarking an existing model must not need the training stack."""

from __future__ import annotations

import subprocess
import sys

from axon.names import served_name


def test_benchmark_path_does_not_import_torch():
    code = (
        "import sys, axon.cli.main, axon.case, axon.cli.bench, axon.engines.python, axon.engines.native, axon.pytest_plugin, axon.study.plan, axon.study.report\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_without_dask_options_dask_is_not_imported():
    code = (
        "import sys, axon.cli.main, axon.case, axon.cli.bench, axon.engines.python, axon.pytest_plugin, axon.engines.hosts\n"
        "from axon.cli.main import build_parser\n"
        "build_parser().parse_args(['bench', '--concurrency', '4'])\n"
        "assert not {'dask', 'distributed'} & set(sys.modules), 'dask was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_served_name():
    assert served_name("v1") == "particle_classifier_v1"
    assert served_name("particle_classifier_v2") == "particle_classifier_v2"
    assert served_name("my_model") == "my_model"
