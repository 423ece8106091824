"""Benchmarking an existing model must not need the training stack."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

from axon.names import served_name


def test_benchmark_path_does_not_import_torch():
    code = (
        "import sys, axon.cli.main, axon.case, axon.cli.bench, axon.engines.python, axon.engines.native, axon.pytest_plugin, axon.study.plan\n"
        f"import {', '.join(sorted(m for m in MODULES if m.startswith(('axon.study.report', 'axon.pytest_plugin'))))}\n"
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


# The layers, bottom first. A module may import its own layer and those below it, never one
# above: the folder tree reads as the data flow (docs/architecture.md).
LAYERS = [
    ("helpers", ("axon.errors", "axon.names", "axon.interrupts", "axon.progress", "axon")),
    ("records", ("axon.records",)),
    ("workload", ("axon.workload",)),
    ("offline", ("axon.offline",)),
    ("serving", ("axon.serving",)),
    ("engines", ("axon.engines",)),
    ("case", ("axon.case",)),
    ("verdicts", ("axon.verdicts",)),
    ("study", ("axon.study",)),
    ("faces", ("axon.cli", "axon.pytest_plugin", "axon.__main__")),
]
FACES = ("axon.cli", "axon.pytest_plugin")
PACKAGE = Path(__file__).resolve().parents[1] / "axon"


def _layer(module: str) -> int:
    best = (-1, -1)  # (length of the matching prefix, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    assert best[1] >= 0, f"{module} is in no layer"
    return best[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every axon module this one imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("axon")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("axon") and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return found


MODULES = _modules()


def _face(module: str) -> str | None:
    return next((f for f in FACES if module == f or module.startswith(f + ".")), None)


def test_layers_import_only_downward():
    upward = []
    for module, path in MODULES.items():
        for target in _imports(module, path):
            if _layer(target) > _layer(module):
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_no_face_imports_another_face_or_a_commands_internals():
    crossing = []
    for module, path in MODULES.items():
        face = _face(module)
        for target in _imports(module, path):
            other = _face(target)
            if face and other and other != face:
                crossing.append(f"{module} imports the other face {target}")
            # One command module never reaches into another: shared options live in axon.cli.args
            # (types) and axon.cli.model_args (which model, and what its requests carry).
            if (
                face == "axon.cli"
                and other == "axon.cli"
                and module not in ("axon.cli", "axon.cli.main", "axon.cli.__main__")
                and target not in ("axon.cli.args", "axon.cli.model_args", "axon.cli", module)
            ):
                crossing.append(f"{module} imports the command module {target}")
    assert not crossing, "\n".join(sorted(crossing))


# Inside a package split by job, the rooms import one way: a room may import those listed before
# it, never one after, so the order reads as what builds on what. The package's __init__ (its
# entry point) stands outside the order.
ROOMS = {
    "axon.study.report": ("style", "selection", "tables", "paths", "plots", "document"),
    "axon.pytest_plugin": ("options", "containers", "servers", "summary", "fixture"),
    "axon.study.sizing": ("arithmetic", "measured", "section", "show", "serve", "spot", "verify"),
}


def test_rooms_import_one_way():
    backward, unlisted = [], []
    for package, rooms in ROOMS.items():
        order = [f"{package}.{room}" for room in rooms]
        unlisted += [m for m in MODULES if m.startswith(package + ".") and m not in order]
        for module in order:
            for target in _imports(module, MODULES[module]):
                if target in order and order.index(target) > order.index(module):
                    backward.append(f"{module} imports {target}, a room listed after it")
    assert not unlisted, f"rooms missing from ROOMS: {unlisted}"
    assert not backward, "\n".join(sorted(backward))


def test_the_layer_check_can_fail(tmp_path):
    """The checker itself sees an upward import (so a passing test above means something)."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from axon.study import plan\n")
    assert "axon.study" in _imports("axon.offline.m", bad) and _layer("axon.study") > _layer("axon.offline.data")


def test_at_most_eight_modules_stand_at_the_top_and_every_package_says_its_stage():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    for init in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring saying its stage"


def test_every_engine_implements_the_one_interface():
    from axon.engines import Engine
    from axon.engines.direct import DirectEngine
    from axon.engines.native import NativeEngine
    from axon.engines.native_open import NativeOpenEngine
    from axon.engines.python import PythonEngine

    for engine in (PythonEngine(), NativeEngine(), NativeOpenEngine(), DirectEngine()):
        assert isinstance(engine, Engine), engine
        assert inspect.signature(type(engine).run).parameters.keys() == {"self", "work"}


def _import_graph() -> dict[str, set[str]]:
    """Each axon module's imports of other axon modules, its own packages left out (a package's
    ``__init__`` may import its modules lazily, as :func:`axon.engines.engine_for` does)."""
    return {m: {t for t in _imports(m, p) if t in MODULES and t != m and not m.startswith(t + ".")} for m, p in MODULES.items()}


def test_no_import_cycles():
    """Not even through an import inside a function: a cycle means two modules share a job."""
    graph, cycles = _import_graph(), []
    for start in graph:
        # Every module reachable from start's imports; start among them is a cycle.
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph[module])
        if start in seen:
            cycles.append(start)
    assert not cycles, "modules on an import cycle: " + ", ".join(sorted(cycles))


def _private_uses(path: Path) -> set[str]:
    """The private names (``_x``) of other axon modules that the file at ``path`` imports or reaches into."""
    tree, found, aliases = ast.parse(path.read_text()), set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("axon") and node.level == 0:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif alias.name.startswith("_"):
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in MODULES})
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.add(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    """What modules share is public in one home (the h2load runner, serving.endpoints, ...), never borrowed."""
    borrowed = [f"{module} uses {name}" for module, path in MODULES.items() for name in _private_uses(path)]
    assert not borrowed, "\n".join(sorted(borrowed))


def test_the_cycle_and_private_name_checks_can_fail(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text(
        "from axon.engines import native\nfrom axon.serving.embedded import _hidden\n\ndef f():\n    return native._secret\n"
    )
    assert _private_uses(bad) == {"axon.engines.native._secret", "axon.serving.embedded._hidden"}
