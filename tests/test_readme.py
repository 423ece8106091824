"""README and docs/ stay honest: every `axon` command line they show parses, every link resolves.

No server and nothing run: each `axon ...` line is parsed by the real parser
(:func:`axon.cli.main.build_parser`), so a renamed or removed option fails here, not in a
newcomer's terminal. Concrete lines are parsed whole (placeholders such as ``HOST:PORT``,
``PATH`` or ``FILE.npz`` are fine as values); synopsis lines (``[--opt N]``, ``a|b``, ``...``)
are checked option by option against the subcommand's parser. The ``--axon-*``/``--triton*``
options of `pytest benchmarks` lines are checked against the pytest plugin's own options.
Relative links (and their ``#anchors``) must reach an existing file (and heading).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from axon.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The top-level pages only: docs/<study>/report.md and the like are generated output.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# A value written in capitals (HOST:8001, PATH, FILE.npz, http://HOST:8002/metrics, N) stands
# for the reader's own: the parser's type checks are skipped for it, nothing else.
PLACEHOLDER = re.compile(r"[A-Z]{2,}|^[A-Z]$")
SYNOPSIS = re.compile(r"[\[\]]|\.\.\.|…|(?<!\S)\|(?!\S)|\S\|\S")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
AXON = re.compile(r"^(?:\$\s*)?(?:\S*/)?(?:\.venv/bin/)?axon(?=\s|$)")
PYTEST = re.compile(r"^(?:\$\s*)?(?:\S*/)?pytest\s+benchmarks\b")


# --------------------------------------------------------------------------- the command lines
def _tolerant(convert):
    def parse(text: str):
        return text if PLACEHOLDER.search(text) else convert(text)

    return parse


@cache
def _parser() -> argparse.ArgumentParser:
    parser = build_parser()
    for command in _commands(parser).values():
        for action in command._actions:
            if action.type is not None and callable(action.type):
                action.type = _tolerant(action.type)
    return parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def command_problem(line: str, whole: bool = True) -> str | None:
    """Why ``line`` (``axon ...``) is not a command the CLI accepts, or None when it is.

    ``whole=False`` (a command named inline in prose, often only in part: `axon compare
    --storage --plot-dir`) checks the subcommand and each option's name, as for a synopsis."""
    line = AXON.sub("axon", line.strip(), count=1)
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        return f"cannot split: {exc}"
    args = tokens[1:]
    parser = _parser()
    commands = _commands(parser)
    if not args:
        return "no subcommand"
    if args[0].startswith("-"):
        top = {s for a in parser._actions for s in a.option_strings}
        bad = [a for a in args if a.startswith("-") and a not in top]
        return f"unknown option(s) {bad}" if bad else None
    if args[0] not in commands:
        return f"no subcommand {args[0]!r} (there are {', '.join(commands)})"
    command = commands[args[0]]
    if not whole or SYNOPSIS.search(line):
        # A synopsis: [--opt N], a|b, ...: every option named must be one of the command's.
        known = set(command._option_string_actions)
        named = {m.group(1) for m in re.finditer(r"(?<![\w-])(--?[A-Za-z][\w-]*)", " ".join(args[1:]))}
        bad = sorted(named - known)
        return f"axon {args[0]}: unknown option(s) {', '.join(bad)}" if bad else None
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return said.getvalue().strip().splitlines()[-1] if said.getvalue().strip() else f"exit {exc.code}"
    return None


@cache
def _plugin_options() -> frozenset[str]:
    """The options `pytest benchmarks` has from axon: the plugin's and benchmarks/conftest.py's
    (the soak), read by calling their own pytest_addoption with a recorder."""
    import importlib.util

    from axon.pytest_plugin import options

    spec = importlib.util.spec_from_file_location("_benchmarks_conftest", ROOT / "benchmarks" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    names: set[str] = set()

    class Recorder:  # stands in for pytest's Parser and its option group
        def addoption(self, *opts, **_):
            names.update(opts)

        def getgroup(self, *_, **__):
            return self

        def addini(self, *_, **__):
            pass

    for module in (options, conftest):
        module.pytest_addoption(Recorder())
    return frozenset(names)


def pytest_problem(line: str) -> str | None:
    """Why a ``pytest benchmarks ...`` line names an axon option the plugin lacks, or None."""
    named = set(re.findall(r"(?<![\w-])(--(?:axon|triton)[\w-]*)", line.split(" #")[0]))
    bad = sorted(named - _plugin_options())
    return f"pytest plugin: unknown option(s) {', '.join(bad)}" if bad else None


def _logical_lines(block: str) -> Iterator[str]:
    """A code block's commands: backslash continuations joined, and a synopsis's indented
    continuation lines (``             [--opt N]``) joined to the command above them."""
    lines: list[str] = []
    for raw in block.splitlines():
        text = raw.rstrip()
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + text.strip()
        elif lines and raw[:1].isspace() and text.strip()[:1] in "[-" and text.strip():
            lines[-1] += " " + text.strip()
        else:
            lines.append(text)
    yield from lines


def shown_commands(page: Path) -> Iterator[tuple[str, str, bool]]:
    """(where, line, whole) for every `axon` and `pytest benchmarks` command a page shows;
    ``whole`` for a code block's lines, which must parse as they stand."""
    text = page.read_text()
    for block in FENCE.findall(text):
        for line in _logical_lines(block):
            for part in line.split("&&"):
                part = part.strip()
                if AXON.match(part) or PYTEST.match(part):
                    yield f"{page.relative_to(ROOT)} (code block)", part, True
    prose = FENCE.sub("", text)
    for span in INLINE.findall(prose):
        span = " ".join(span.split())
        if AXON.match(span) and len(span.split()) > 1 or PYTEST.match(span):
            yield f"{page.relative_to(ROOT)} (inline)", span, False


def problem(line: str, whole: bool = True) -> str | None:
    return pytest_problem(line) if PYTEST.match(line) else command_problem(line, whole)


# --------------------------------------------------------------------------- the links
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def link_problem(page: Path, target: str) -> str | None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return None
    path, _, anchor = target.partition("#")
    where = (page.parent / path).resolve() if path else page
    if not where.exists():
        return f"{target}: no such file"
    if anchor and where.suffix == ".md" and anchor not in anchors(where):
        return f"{target}: no heading #{anchor} in {where.name}"
    return None


# --------------------------------------------------------------------------- the tests
def test_readme_is_the_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the front door keeps to 200 (move the rest into docs/)"
    assert (ROOT / "docs" / "README.md").exists()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_parses(page):
    shown = list(shown_commands(page))
    bad = [f"{where}: {line}\n    -> {why}" for where, line, whole in shown if (why := problem(line, whole))]
    assert not bad, "commands the CLI would refuse:\n" + "\n".join(bad)


def test_readme_shows_commands():
    # The checker must have something to check: the tour's commands are found.
    shown = [line for _, line, _ in shown_commands(README)]
    assert any(line.split()[1:2] == ["bench"] for line in shown if AXON.match(line))
    assert any(PYTEST.match(line) for line in shown)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page):
    text = FENCE.sub("", page.read_text())
    bad = [why for target in LINK.findall(text) if (why := link_problem(page, target))]
    assert not bad, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(bad)


def test_readme_links_every_docs_page():
    # The front door's index reaches docs/README.md, and that index reaches every page.
    assert "docs/README.md" in LINK.findall(README.read_text())
    index = set(LINK.findall((ROOT / "docs" / "README.md").read_text()))
    missing = [p.name for p in PAGES[1:] if p.name != "README.md" and p.name not in index]
    assert not missing, f"docs/README.md does not link {missing}"


# The checker itself can fail: made-up commands, options and links are caught.
@pytest.mark.parametrize(
    "line",
    [
        "axon bench --concurrency 16 --made-up-option 3",  # a concrete line, parsed
        "axon bench [--made-up-option N] [--rate R]",  # a synopsis, option by option
        "axon frobnicate --model v1",  # no such subcommand
        "axon bench --concurrency sixteen",  # a value the option's type refuses
        "axon bench --concurrency 4 --rate 100",  # options the parser keeps apart
        "axon study --engine turbo",  # a choice that is not one
        ".venv/bin/axon compare old.json new.json --metric p42",
        "pytest benchmarks --axon-made-up 3",
    ],
)
def test_checker_catches_a_wrong_line(line):
    assert problem(line) is not None


def test_checker_catches_a_wrong_inline_mention():
    assert command_problem("axon compare --storage --plot-dir", whole=False) is None
    assert command_problem("axon compare --storage --plot-dirs", whole=False) is not None
    assert command_problem("axon train/serve", whole=False) is not None


@pytest.mark.parametrize(
    "line",
    [
        "axon bench --url HOST:8001 --metrics-url http://HOST:8002/metrics --batching on",
        "axon bench --onnx PATH --shape NAME:d1,d2 --input-data FILE.npz",
        "axon train [--dataset synthetic|higgs|PATH] [--rows N] [--models v1,v2[,v3]]",
        "axon --version",
        "pytest benchmarks --axon-onnx PATH --axon-shape NAME:d1,d2",
    ],
)
def test_checker_accepts_placeholders_and_synopses(line):
    assert problem(line) is None


def test_link_checker_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section\n")
    (tmp_path / "there.md").write_text("# There\n")
    assert link_problem(page, "missing.md") is not None
    assert link_problem(page, "there.md#nowhere") is not None
    assert link_problem(page, "there.md#there") is None
    assert link_problem(page, "#a-section") is None
    assert link_problem(page, "https://example.org/x") is None
