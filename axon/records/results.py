"""The result record: one run's measurement, versioned, written atomically, mergeable."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

from axon.errors import AxonError
from axon.records import stats
from axon.records.atomic import write_json
from axon.records.schema import SCHEMA_VERSION, ResultsFile, RunRecord, add_counts


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def axon_version() -> str:
    from axon import version

    return version()


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd or Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_results(path: Path, runs: list[RunRecord]) -> None:
    """Write runs atomically (see :mod:`axon.records.atomic`)."""
    write_json(path, {"schema_version": SCHEMA_VERSION, "runs": runs})


def check_writable(path: Path) -> None:
    """Fail before the load, not after it, on a results file that can't be written.

    The file is written atomically (a temporary file beside it, then a rename), so what must
    be writable is its folder: a probe file is made there. Folders made for the probe are
    kept when it succeeds (the first write would make them) and removed when it fails.
    """
    path = Path(path)
    if path.is_dir():
        raise AxonError(f"cannot write results to {path}: it is a folder; give a file name")
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".axon-probe-"):
            pass
    except OSError as exc:
        for folder in missing:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise AxonError(f"cannot write results to {path}: {exc.strerror or exc}") from None


RESCUE_DIR_NAME = "axon-rescued"


def rescue_paths(path: Path) -> list[Path]:
    """Where a record goes when its own path can't be written: the system's temporary folder,
    then the home folder, then the working directory (the first that takes it wins)."""
    name = Path(path).name or "results.json"
    dirs = [Path(tempfile.gettempdir()) / RESCUE_DIR_NAME, Path.home() / f".{RESCUE_DIR_NAME}", Path.cwd()]
    return [d / (name if d != Path.cwd() else f"{RESCUE_DIR_NAME}-{name}") for d in dirs]


def save_results(path: Path, runs: list[dict]) -> tuple[Path, str | None]:
    """Write runs to ``path``; if that fails (unwritable, disk full), to a rescue path instead.

    Returns (the path written, the problem with ``path`` or None). Nothing measured is lost:
    when no rescue path takes the file either, the JSON goes to stdout and an error is raised.
    """
    try:
        write_results(path, runs)
        return Path(path), None
    except OSError as exc:
        problem = f"{exc.strerror or exc}" + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")
        blocker = next((a for a in Path(path).parents if a.exists()), None)
        if blocker is not None and not blocker.is_dir():
            problem = f"{blocker} is a file, not a folder"
    for rescue in rescue_paths(path):
        if rescue.resolve() == Path(path).resolve():
            continue
        try:
            write_results(rescue, runs)
            return rescue, problem
        except OSError:
            continue
    sys.stdout.write(json.dumps({"schema_version": SCHEMA_VERSION, "runs": runs}, sort_keys=True) + "\n")
    sys.stdout.flush()
    raise AxonError(f"cannot write results to {path} ({problem}) nor to any rescue folder; the record was printed on stdout")


def read_json(path: Path) -> dict:
    """A JSON object from a file, or a one-line error: the one place a results file is parsed."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AxonError(f"cannot read results {path}: {exc}") from None
    if not isinstance(payload, dict):
        raise AxonError(f"{path}: not an axon results file (a JSON object with schema_version and runs)")
    return payload


def check_results(payload: dict, path: Path) -> list[RunRecord]:
    """The runs of an axon results payload whose schema this axon reads; anything else is a one-line error."""
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise AxonError(f"{path}: schema version {payload.get('schema_version')!r}, this axon reads {SCHEMA_VERSION}")
    runs = payload.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise AxonError(f"{path}: 'runs' is not a list of records")
    return runs


def read_results(path: Path) -> list[RunRecord]:
    """The runs of an axon results file, schema-checked (every command reads through here)."""
    return check_results(read_json(path), path)


def read_measurements(path: Path) -> tuple[str, dict]:
    """A file that holds axon measurements: ("axon", results file) or ("pytest-benchmark", its JSON).

    pytest-benchmark files carry axon's records in ``extra_info["axon"]``; an axon results file
    is schema-checked. Anything else is ("other", payload).
    """
    payload = read_json(path)
    if "benchmarks" in payload:
        return "pytest-benchmark", payload
    if "runs" in payload or "schema_version" in payload:
        return "axon", ResultsFile(schema_version=SCHEMA_VERSION, runs=check_results(payload, path))
    return "other", payload


def benchmark_runs(payload: dict, path: Path) -> list[RunRecord]:
    """The axon runs a pytest-benchmark JSON carries: each case's ``extra_info["axon"]``, its
    repeats unpooled (a case measured N times holds the N records under ``repeats``).

    A file with benchmarks but no axon record (another suite's) is a one-line error that says so.
    """
    runs: list[RunRecord] = []
    for bench in payload.get("benchmarks") or []:
        record = (bench.get("extra_info") or {}).get("axon") if isinstance(bench, dict) else None
        if not isinstance(record, dict):
            continue
        pooled = record.get("repeats")
        runs += pooled if isinstance(pooled, list) and pooled else [record]
    if not runs:
        raise AxonError(
            f"{path}: a pytest-benchmark JSON with no axon record (extra_info['axon']) in any benchmark: nothing axon measured"
        )
    versions = {r.get("schema_version") for r in runs}
    if versions != {SCHEMA_VERSION}:
        raise AxonError(
            f"{path}: pytest-benchmark JSON whose axon records have schema version(s) {', '.join(sorted(map(repr, versions)))}, this axon reads {SCHEMA_VERSION}"
        )
    return runs


def merge_runs(runs: Iterable[dict]) -> dict[str, Any]:
    """Merge runs of the same case (say, from several hosts): exact, via the histograms."""
    runs = list(runs)
    if not runs:
        raise AxonError("nothing to merge")
    histogram = stats.merge([r["histogram"] for r in runs])
    sent = sum(r["requests"]["sent"] for r in runs)
    ok = sum(r["requests"]["ok"] for r in runs)
    failures = add_counts(r["requests"]["failures"] for r in runs)
    # Runs side by side: throughput adds up over a common window.
    return {
        "merged_from": len(runs),
        "requests": {"sent": sent, "ok": ok, "failed": sent - ok, "failures": failures},
        "throughput_rps": sum(r["throughput_rps"] for r in runs),
        "latency_ms": stats.LatencySummary.of(histogram).as_dict(),
        "histogram": stats.encode(histogram),
    }


class ResultsWriter:
    """Where a command's runs go, written after every run (an interruption keeps what was measured).

    The path is checked before any load (:func:`check_writable`). If it fails later (gone,
    disk full), the runs go to a rescue path, said once in one line, and every later write
    follows them there; :meth:`finish` then fails the command, naming where everything is.
    """

    def __init__(self, path: Path, say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)):
        # Folders the check is about to make: removed again by discard() if no run is ever saved.
        self._made = [p for p in [Path(path).parent, *Path(path).parent.parents] if not p.exists()]
        check_writable(path)
        self.requested = self.path = Path(path)
        self.problem: str | None = None
        self._say = say
        self._saved = False

    def save(self, runs: list[RunRecord]) -> Path:
        self._saved = True
        self.path, problem = save_results(self.path, runs)
        if problem and self.problem is None:
            self.problem = problem
            self._say(f"axon: cannot write results to {self.requested} ({problem}); saved to {self.path} instead")
        return self.path

    def discard(self) -> None:
        """A command that failed before its first run leaves nothing behind: the folders made for the results go."""
        if self._saved:
            return
        for folder in self._made:  # innermost first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                folder.rmdir()

    def finish(self) -> None:
        if self.problem:
            raise AxonError(
                f"cannot write results to {self.requested} ({self.problem}); nothing was lost: every run is in {self.path}"
            )


def client_bound_summary(runs: list[dict]) -> str:
    """One line for the end of a command: how many runs the client, not the server, may have limited."""
    bound = sum(bool(r["client"]["client_bound"]) for r in runs)
    threshold = runs[0]["client"]["threshold_cores"] if runs else float("nan")
    line = f"client-bound: {bound} of {len(runs)} runs (a load-generator process above {threshold:g} of a core)"
    return line + ("; for those, the client, not the server, may have set the numbers" if bound else "")


def default_output(directory: Path, label: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return directory / f"{label}-{stamp}-{os.getpid()}.json"
