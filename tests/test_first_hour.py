"""A user's first hour: every mistake is one line and exit code 2, before any work starts.

Each bad input goes through the real command line, in a child process, as a user types it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import axon
from axon.cli.main import build_parser
from axon.errors import AxonError, ServerError
from axon.offline import data
from axon.offline.pipeline import VALIDATION_ROWS_FILE
from axon.records import atomic
from axon.serving import backends
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from tests.absent import DOCKER, take_away
from tests.helpers import assert_clean_error, run_axon

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def _slo_file(tmp_path: Path, text: str, name: str = "slo.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# (name of the budget file, its text, the message fragment)
SLO_CASES = {
    "batching-upper-case": ("slo.toml", '[[slo]]\nbatching = "ON"\np50_ms = 7\n', "batching must be one of on, off, got 'ON'"),
    "mode-misspelt": ("slo.toml", '[[slo]]\nmode = "closd"\np50_ms = 7\n', "mode must be one of closed, open"),
    "model-unknown": (
        "slo.toml",
        '[[slo]]\nmodel = "v7"\np50_ms = 7\n',
        "model 'v7' is not a known model; known: particle_classifier_v1",
    ),
    "limit-bool": ("slo.toml", "[[slo]]\np50_ms = true\n", "p50_ms must be a number, got True"),
    "limit-negative": ("slo.toml", "[[slo]]\np99_ms = -1\n", "p99_ms must be >= 0"),
    "error-rate-percent": ("slo.toml", "[[slo]]\nmax_error_rate = 5\n", "max_error_rate is a fraction between 0 and 1"),
    "concurrency-zero": ("slo.toml", "[[slo]]\nmin_concurrency = 0\np50_ms = 7\n", "min_concurrency must be a whole number >= 1"),
    "concurrency-min-over-max": (
        "slo.toml",
        "[[slo]]\nmin_concurrency = 64\nmax_concurrency = 4\np50_ms = 7\n",
        "min_concurrency 64 > max_concurrency 4",
    ),
    "table-misspelt": ("slo.toml", "[[slos]]\np50_ms = 7\n", "unknown key(s) ['slos'] in the top level; known: slo"),
    "table-not-array": ("slo.toml", "[slo]\np50_ms = 7\n", "must be an array of tables"),
    "pyproject-table-misspelt": (
        "pyproject.toml",
        "[[tool.axon.slos]]\np50_ms = 7\n",
        "unknown key(s) ['slos'] in [tool.axon]; known: slo",
    ),
    "key-misspelt": (
        "pyproject.toml",
        '[[tool.axon.slo]]\nname = "fast"\np50ms = 7\n',
        "SLO #1 (fast): unknown keys ['p50ms']; known keys: name, model",
    ),
}


@pytest.mark.parametrize("case", SLO_CASES.values(), ids=SLO_CASES.keys())
def test_bad_budgets_stop_a_study_before_it_starts(tmp_path, case):
    name, text, message = case
    # No artifacts exist: a study that got past its budgets would fail differently.
    done = run_axon(
        "study",
        "--pyproject",
        _slo_file(tmp_path, text, name),
        "--artifacts",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "out"),
    )
    assert_clean_error(done, f"axon: error: {tmp_path / name}", message)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists()


def _repository_with(where: Path, *models: str) -> Path:
    """A repository of empty configs: enough for axon's checks, which run before any server."""
    for model in models:
        (where / model).mkdir(parents=True)
        (where / model / "config.pbtxt").write_text(f'name: "{model}"\n')
    return where


def _one_class_csv(tmp_path: Path) -> str:
    events = data.synthetic(400, seed=2)
    path = tmp_path / "signal-only.csv"
    data.write_higgs_csv(path, events.features, events.labels * 0 + 1)
    return str(path)


def _fake_artifacts(where: Path, *models: str) -> Path:
    """What axon's checks read before any server starts: validation rows and repository configs."""
    _repository_with(embedded_repository(where, "on"), *models)
    where.mkdir(parents=True, exist_ok=True)
    np.savez(where / VALIDATION_ROWS_FILE, features=np.zeros((8, 28), dtype=np.float32), labels=np.zeros(8))
    return where


def _results_file(where: Path, concurrency: int) -> str:
    """A results file holding one (minimal) run: enough for the checks merge makes before merging."""
    run = {
        "model": "particle_classifier_v1",
        "batching": "on",
        "load": {"mode": "closed", "concurrency": concurrency},
        "repeat": None,
    }
    path = where / f"c{concurrency}.json"
    path.write_text(json.dumps({"schema_version": 1, "runs": [run]}))
    return str(path)


def _text_file(where: Path) -> str:
    (where / "notes.txt").write_text("not json\n")
    return str(where / "notes.txt")


def _json_file(where: Path, name: str, payload: dict) -> str:
    (where / name).write_text(json.dumps(payload))
    return str(where / name)


def _a_file(where: Path) -> Path:
    """A plain file: a folder under it can't be made, even by root (whom chmod does not stop)."""
    (where / "a-file").write_text("")
    return where / "a-file"


def _copy_of(where: Path, path: str) -> str:
    shutil.copy(path, where / "copy.json")
    return str(where / "copy.json")


QUICK_BENCH = ["--duration", "1", "--warmup", "0"]


def _damaged_artifacts(where: Path) -> str:
    """Artifacts whose manifest.json was cut short (a full disk, an interrupted copy)."""
    art = _fake_artifacts(where / "art", "particle_classifier_v1")
    (art / "models" / "particle_classifier_v1").mkdir(parents=True)
    (art / "models" / "particle_classifier_v1" / "model.onnx").write_bytes(b"never read: the manifest is refused first")
    (art / "manifest.json").write_text('{"dataset": ')
    return str(art)


CLI_CASES = {
    "train-too-few-rows": (lambda t: ["train", "--rows", "100", "--out", str(t / "out")], "training needs at least 304 rows, got 100"),
    "train-one-class": (lambda t: ["train", "--dataset", _one_class_csv(t), "--rows", "400", "--out", str(t / "out")], "has 0 background rows"),
    "bench-unknown-model": (
        lambda t: ["bench", "--model", "v7", *QUICK_BENCH, "--output", str(t / "out" / "r.json"), "--artifacts", str(_fake_artifacts(t / "art", "particle_classifier_v1"))],
        "model(s) 'v7' not in the repository",
    ),
    "serve-model-not-in-repository": (
        lambda t: ["serve", "--repository", str(_repository_with(t / "repo", "particle_classifier_v1")), "--models", "v2"],
        "'particle_classifier_v2' not in the repository",
    ),
    # A path the user gave that does not exist is an error, never a reason to measure something else.
    "bench-artifacts-missing": (lambda t: ["bench", "--artifacts", str(t / "nonexistent-art"), *QUICK_BENCH], "--artifacts {t}/nonexistent-art: no such folder"),
    "bench-artifacts-not-trained": (lambda t: ["bench", "--artifacts", str(t), "--url", "127.0.0.1:1", "--engine", "python", *QUICK_BENCH], "--artifacts {t}: no validation_rows.npz there"),
    "bench-output-unwritable": (
        lambda t: ["bench", "--artifacts", str(_fake_artifacts(t / "art", "particle_classifier_v1")), "--output", "/proc/x/y.json", *QUICK_BENCH],
        "cannot write results to /proc/x/y.json",
    ),
    "bench-output-is-a-folder": (
        lambda t: ["bench", "--artifacts", str(_fake_artifacts(t / "art", "particle_classifier_v1")), "--output", str(t), *QUICK_BENCH], "it is a folder"
    ),
    "bench-repository-missing": (lambda t: ["bench", "--artifacts", str(_fake_artifacts(t / "art")), *QUICK_BENCH], "model repository not found: {t}/art/repositories"),
    "bench-url-without-port": (lambda t: ["bench", "--url", "localhost", *QUICK_BENCH], "--url must be HOST:PORT of Triton's gRPC endpoint, got 'localhost'"),
    "bench-backend-with-url": (lambda t: ["bench", "--url", "127.0.0.1:1", "--backend", "docker"], "--backend picks the server axon starts; with --url axon starts none"),
    "bench-metrics-url-without-url": (lambda t: ["bench", "--metrics-url", "http://127.0.0.1:1/metrics"], "--metrics-url describe(s) a server given with --url"),
    "bench-tls-without-url": (lambda t: ["bench", "--tls", "--header", "a=b"], "--tls and --ca-file talk to a server given by --url"),
    "bench-header-without-url": (lambda t: ["bench", "--header", "a=b"], "--header describe(s) a server given with --url"),
    "bench-ab-with-batching": (lambda t: ["bench", "--ab", "--batching", "off"], "--batching names one mode, and --ab runs both"),
    "bench-ab-with-url": (lambda t: ["bench", "--ab", "--url", "127.0.0.1:1"], "--ab compares batching on and off on servers axon starts"),
    "bench-poisson-without-rate": (lambda t: ["bench", "--poisson"], "--poisson shapes open-loop arrivals: give --rate with it"),
    "bench-connections-on-python": (lambda t: ["bench", "--engine", "python", "--connections", "2"], "--connections shapes the native engine's load"),
    "serve-url-without-port": (lambda t: ["serve", "--backend", "external", "--url", "localhost"], "--url must be HOST:PORT"),
    # Round 3 (issue 21): each used to be a traceback, a silent change or a 10 s wait.
    "bench-metrics-url-garbage": (lambda t: ["bench", "--url", "127.0.0.1:8001", "--metrics-url", "garbage", *QUICK_BENCH], "--metrics-url must be Triton's metrics URL, e.g. http://HOST:8002/metrics, got 'garbage'"),
    "serve-metrics-url-garbage": (lambda t: ["serve", "--backend", "external", "--url", "127.0.0.1:8001", "--metrics-url", "ftp://x"], "--metrics-url must be Triton's metrics URL"),
    "bench-url-port-out-of-range": (lambda t: ["bench", "--url", "127.0.0.1:99999", *QUICK_BENCH], "--url: port 99999 is out of range (1-65535)"),
    "bench-url-with-http": (lambda t: ["bench", "--url", "http://127.0.0.1:8001", *QUICK_BENCH], "--url is Triton's gRPC endpoint, HOST:PORT without http://"),
    "tune-url-with-http": (lambda t: ["tune", "--url", "http://127.0.0.1:8001", "--out", str(t / "out")], "--url is Triton's gRPC endpoint, HOST:PORT without http://"),
    "bench-manifest-damaged": (lambda t: ["bench", "--artifacts", _damaged_artifacts(t), "--output", str(t / "out" / "r.json"), *QUICK_BENCH], "manifest.json is damaged (JSONDecodeError"),
    "direct-manifest-damaged": (lambda t: ["direct", "--artifacts", _damaged_artifacts(t), "--model", "v1", "--output", str(t / "out" / "r.json")], "manifest.json is damaged (JSONDecodeError"),
    "tune-manifest-damaged": (lambda t: ["tune", "--artifacts", _damaged_artifacts(t), "--out", str(t / "out")], "manifest.json is damaged (JSONDecodeError"),
    "bench-in-flight-bound-closed-loop": (lambda t: ["bench", "--concurrency", "4", "--max-in-flight", "8", *QUICK_BENCH], "an in-flight bound goes with an open-loop rate"),
    "bench-in-flight-bound-below-connections": (lambda t: ["bench", "--rate", "15000", "--engine", "native", "--max-in-flight", "1", *QUICK_BENCH], "below the 2 h2load connections"),
    "study-artifacts-missing": (
        lambda t: ["study", "--artifacts", str(t / "none"), "--out", str(t / "out"), "--pyproject", str(t / "no.toml")],
        "--artifacts {t}/none: no such folder",
    ),
    "study-out-unwritable": (lambda t: ["study", "--artifacts", str(t), "--out", "/proc/x", "--pyproject", str(t / "no.toml")], "output directory /proc/x is not writable"),
    "report-missing-path": (lambda t: ["report", str(t / "nothing.json")], "{t}/nothing.json: no such file or folder"),
    "report-folder-without-study": (lambda t: ["report", str(t)], "no study.json in {t}; give a results file"),
    "report-not-a-results-file": (lambda t: ["report", _text_file(t)], "cannot read results {t}/notes.txt"),
    # Round 4 (issue 26): each used to be a traceback, a contradiction or a verdict never reached.
    "bench-window-shorter-than-the-engine-times": (lambda t: ["bench", "--engine", "python", "--duration", "0.01", "--warmup", "0"],
                                                   "--duration 0.01 s is shorter than the python engine can time: its shortest window is 0.1 s"),
    "report-out-under-a-file": (lambda t: ["report", _results_file(t, 4), "--out", str(_a_file(t) / "out")], "cannot write the report to {t}/a-file/out: {t}/a-file is a file, not a folder"),
    "report-pytest-benchmark-without-axon": (lambda t: ["report", _json_file(t, "pb.json", {"benchmarks": [{"name": "test_sum", "extra_info": {}}]})],
                                             "{t}/pb.json: a pytest-benchmark JSON with no axon record (extra_info['axon'])"),
    "report-json-of-another-kind": (lambda t: ["report", _json_file(t, "other.json", {"name": "x"})], "neither axon results (schema_version, runs) nor a pytest-benchmark JSON"),
    "compare-a-file-with-itself": (lambda t: ["compare", _results_file(t, 4), _results_file(t, 4)], "OLD and NEW are the same file ({t}/c4.json)"),
    "compare-identical-content": (lambda t: ["compare", _results_file(t, 4), _copy_of(t, _results_file(t, 4))], "hold identical content (the same runs)"),
    "merge-one-file": (lambda t: ["merge", _results_file(t, 4), "--output", str(t / "out" / "m.json")], "give two or more results files to merge"),
    "merge-missing-file": (lambda t: ["merge", _results_file(t, 4), str(t / "gone.json"), "--output", str(t / "out" / "m.json")], "cannot read results {t}/gone.json"),
    "merge-different-cases": (
        lambda t: ["merge", _results_file(t, 4), _results_file(t, 16), "--output", str(t / "out" / "m.json")],
        "runs of different cases don't merge: {t}/c16.json has 'particle_classifier_v1, batching on, c=16'",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_bad_inputs_fail_before_any_work(tmp_path, case):
    make_args, message = case
    started = time.monotonic()
    done = run_axon(*make_args(tmp_path), cwd=ROOT)
    assert_clean_error(done, "axon: error:", message.format(t=tmp_path))
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert time.monotonic() - started < 60  # no server started, no model trained
    assert not (tmp_path / "out").exists()


# argparse's own errors: the one-line usage, then the error; never the whole usage block.
USAGE_CASES = {
    "bench-sweep-empty-item": (["bench", "--sweep", "1,,4"], "argument --sweep: empty item in '1,,4'"),
    "bench-max-error-rate-above-one": (
        ["bench", "--max-error-rate", "2"],
        "argument --max-error-rate: must be between 0 and 1, got 2",
    ),
    "bench-max-server-memory-garbage": (
        ["bench", "--max-server-memory", "lots"],
        "argument --max-server-memory: expected a size such as 8G",
    ),
    "train-negative-queue": (["train", "--max-queue-size", "-1"], "argument --max-queue-size: must be >= 0, got -1"),
}


@pytest.mark.parametrize("case", USAGE_CASES.values(), ids=USAGE_CASES.keys())
def test_usage_errors_are_the_short_usage_and_one_line(tmp_path, case):
    args, message = case
    done = run_axon(*args, cwd=tmp_path)
    assert_clean_error(done, message)
    lines = done.stderr.strip().splitlines()
    assert (
        len(lines) == 2
        and lines[0].startswith(f"usage: axon {args[0]} [options]")
        and lines[1].startswith(f"axon {args[0]}: error: ")
    ), done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.server
def test_tls_against_a_plaintext_server_says_so_and_leaves_nothing(server_v1, tmp_path):
    done = run_axon(
        "bench",
        "--url",
        server_v1.endpoints.grpc,
        "--tls",
        *QUICK_BENCH,
        "--output",
        str(tmp_path / "out" / "r.json"),
        cwd=tmp_path,
        timeout=60,
    )
    assert_clean_error(done, "the server does not speak TLS", "drop --tls")
    errors = [
        line for line in done.stderr.splitlines() if line.startswith("axon: error:")
    ]  # notices (engine, no artifacts) may precede it
    assert len(errors) == 1 and "not trusted" not in errors[0], done.stderr
    assert not (tmp_path / "out").exists()


def _host_port(url: str) -> str:
    return url.split("//", 1)[-1].split("/", 1)[0]


@pytest.mark.server
@pytest.mark.parametrize("port", ["metrics", "http"])
def test_url_at_an_http1_port_is_said_at_once(server_v1, tmp_path, port):
    ep = server_v1.endpoints
    url = _host_port(ep.metrics) if port == "metrics" else ep.http
    done = run_axon("bench", "--url", url, *QUICK_BENCH, "--output", str(tmp_path / "out" / "r.json"), cwd=tmp_path, timeout=60)
    assert_clean_error(done, f"{url} is an HTTP/1 server (it answered 'HTTP/1.1 ", "not Triton's gRPC endpoint", "usually 8001")
    errors = [
        line for line in done.stderr.splitlines() if line.startswith("axon: error:")
    ]  # notices (no artifacts) may precede it
    assert len(errors) == 1, done.stderr
    # Said from the probe's answer: never the readiness wait's timeout, never a guess at TLS.
    assert "not ready after" not in done.stderr and "--tls" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.server
@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("grpc", "the server there does not answer HTTP/1"),
        ("http", "answers, but not with Triton's metrics (no nv_* counters there)"),
    ],
)
def test_a_metrics_url_that_is_not_trittons_metrics_is_one_line_before_any_load(server_v1, tmp_path, where, message):
    ep = server_v1.endpoints
    metrics = f"http://{ep.grpc}/metrics" if where == "grpc" else f"http://{ep.http}/v2"  # the gRPC port; Triton's HTTP API
    done = run_axon(
        "bench",
        "--url",
        ep.grpc,
        "--metrics-url",
        metrics,
        *QUICK_BENCH,
        "--output",
        str(tmp_path / "out" / "r.json"),
        cwd=tmp_path,
        timeout=60,
    )
    assert_clean_error(done, metrics, message, "http://HOST:8002/metrics")
    errors = [line for line in done.stderr.splitlines() if line.startswith("axon: error:")]
    assert len(errors) == 1, done.stderr
    assert "req/s" not in done.stderr and not (tmp_path / "out").exists()  # no load was offered, nothing written


def test_the_http1_probe_tells_an_http1_server_from_a_grpc_one():
    """Real sockets, no Triton: Python's HTTP/1 server, and a gRPC (HTTP/2) server that must never be refused."""
    import http.server
    import threading
    from concurrent import futures

    import grpc

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    rpc_port = rpc.add_insecure_port("127.0.0.1:0")
    rpc.start()
    try:
        assert backends.http1_answer(f"127.0.0.1:{web.server_port}").startswith("HTTP/1.0 200")
        assert backends.http1_answer(f"127.0.0.1:{rpc_port}") is None
    finally:
        web.shutdown()
        web.server_close()
        rpc.stop(0)
    assert backends.http1_answer(f"127.0.0.1:{web.server_port}") is None  # nothing there: left to the readiness check


@pytest.mark.parametrize("engine", ["native", "python"])
def test_a_window_shorter_than_the_engine_times_is_refused_with_its_minimum(engine):
    from dataclasses import replace

    from axon.engines import EngineChoice, engine_for, h2load_runner, python
    from axon.engines.loadgen import LoadSpec
    from axon.pytest_plugin.options import OPTIONS

    shortest = {"native": h2load_runner.MIN_WINDOW_S, "python": python.MIN_WINDOW_S}[engine]
    spec = LoadSpec("m", concurrency=4, duration_s=shortest / 10, warmup_s=0).validate()
    choice = EngineChoice(engine, engine, None)
    with pytest.raises(
        AxonError,
        match=rf"^--duration {shortest / 10:g} s is shorter than the {engine} engine can time: its shortest window is {shortest:g} s \(",
    ):
        engine_for(choice, spec)
    with pytest.raises(AxonError, match=rf"^--axon-duration {shortest / 10:g} s is shorter"):  # the plugin names its own option
        engine_for(choice, spec, OPTIONS)
    assert engine_for(choice, replace(spec, duration_s=shortest)).name == engine
    assert engine_for(choice, replace(spec, requests=100)).name == engine  # a request count bounds that window, not the duration


def test_report_reads_a_pytest_benchmark_json(tmp_path):
    recorded = sorted((ROOT / "tests" / "data" / "history_noise").rglob("*.json"))[
        0
    ]  # a real `pytest benchmarks --benchmark-json` file
    shutil.copy(recorded, tmp_path / "bench.json")
    done = run_axon("report", str(tmp_path / "bench.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        "| particle_classifier_v1, batching on, c=16 | 1 |" in done.stdout and "schema version" not in done.stdout + done.stderr
    )
    assert (tmp_path / "bench-report" / "latency_cdf.png").is_file()


def test_pytest_benchmark_cases_measured_several_times_give_each_run():
    from axon.records.results import benchmark_runs
    from axon.records.schema import SCHEMA_VERSION

    one, two, three = ({"schema_version": SCHEMA_VERSION, "repeat": {"index": i, "of": 2}} for i in range(3))
    pooled = {**two, "repeats": [one, two]}
    payload = {
        "benchmarks": [
            {"name": "a", "extra_info": {"axon": pooled}},
            {"name": "b", "extra_info": {"axon": three}},
            {"name": "c", "extra_info": {}},
        ]
    }
    assert benchmark_runs(payload, Path("x.json")) == [one, two, three]
    with pytest.raises(
        AxonError, match=r"x.json: pytest-benchmark JSON whose axon records have schema version\(s\) '0', this axon reads"
    ):
        benchmark_runs({"benchmarks": [{"name": "a", "extra_info": {"axon": {"schema_version": "0"}}}]}, Path("x.json"))


def test_version():
    for command in (["-m", "axon", "--version"], ["-m", "axon.cli", "--version"]):
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"axon {axon.version()}"
    assert axon.__version__ == axon.version() != ""


@pytest.mark.parametrize("command", ["train", "serve", "report", "bench", "merge"])
def test_help_shows_every_default(command):
    done = run_axon(command, "--help", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps lines
    expected = {
        "train": [
            "(default: 0)",
            "(default: 8)",
            "(default: 100000)",
            "(default: v1,v2)",
            "(default: artifacts)",
            "(default: synthetic)",
        ],
        "serve": ["(default: embedded)", "(default: on)", "(default: v1,v2)", "(default: artifacts)", "(default: that one)"],
        "report": ["(default: results)", "<file name>-report/"],
        "bench": ["(default 64)", "(default 30)", "(default 1)", "(default 0)", "(default ./artifacts;", "(default embedded)"],
        "merge": ["one per host"],
    }[command]
    for fragment in expected:
        assert fragment in text, (fragment, text)
    # Every option and positional has a help string.
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert [a.dest for a in sub.choices[command]._actions if not a.help] == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_written_with_the_usual_mode(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic.write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == mode


def test_train_writes_only_under_out(tmp_path, monkeypatch):
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    # The child runs in run_dir; this checkout's axon must still be the one imported.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    done = run_axon("train", "--rows", "400", "--epochs", "1", "--models", "v1", "--out", str(tmp_path / "out"), cwd=run_dir)
    assert done.returncode == 0, done.stderr
    assert list(run_dir.iterdir()) == []
    assert (
        tmp_path / "out" / "repositories" / "embedded" / "batching_on" / "particle_classifier_v1" / "1" / "model.onnx"
    ).is_file()
    assert (tmp_path / "out" / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Cases that only ask for the budgets: cheap, and enough to show whether any case ran.
PLUGIN_CASES = """
import pytest

@pytest.mark.parametrize("n", range(3))
def test_case(axon_budgets, n):
    pass
"""


@pytest.fixture
def pytester(pytester, monkeypatch):
    # The child pytest runs in a temporary folder; this checkout's plugin must be the one loaded.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return pytester


def test_plugin_refuses_a_bad_budget_file_once_before_any_case(pytester):
    pytester.makepyfile(PLUGIN_CASES)
    pytester.makefile(".toml", slo='[[slo]]\nname = "fast"\np50ms = 7\n')
    result = pytester.runpytest_subprocess("--axon-slo-file", "slo.toml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("SLO #1 (fast): unknown keys ['p50ms']") == 1, err
    assert "Traceback" not in err and "test_case" not in result.stdout.str()


def test_plugin_budgets_from_the_rootdir_pyproject_are_checked_too(pytester):
    pytester.makepyfile(PLUGIN_CASES)
    pytester.makefile(".toml", pyproject='[[tool.axon.slo]]\nbatching = "ON"\np50_ms = 7\n')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "batching must be one of on, off, got 'ON'" in result.stderr.str()


# --------------------------------------------------------------------------- real servers


@pytest.mark.server
def test_sigterm_stops_serve_and_removes_its_temporary_folder(artifacts):
    proc = subprocess.Popen(
        [sys.executable, "-m", "axon.cli", "serve", "--artifacts", str(artifacts), "--models", "v1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        workdir = None
        for line in proc.stdout:  # the CLI's own "serving" line says it is ready
            if line.strip().startswith("log "):
                workdir = Path(line.split()[1]).parent
            if "press Ctrl-C" in line:
                break
        assert workdir is not None and workdir.name.startswith("axon-triton-") and workdir.is_dir()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "expected tritonserver to be running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 128 + signal.SIGTERM
        err = proc.stderr.read()
        assert "axon: terminated" in err and "Traceback" not in err, err
        assert not workdir.exists()
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.server
def test_a_failed_start_keeps_the_log_it_names(artifacts, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(embedded_repository(artifacts, "on"), repo)
    (repo / "particle_classifier_v1" / "config.pbtxt").write_text("name: 'particle_classifier_v1'\nmax_batch_size: banana\n")
    server = EmbeddedServer(repo, models=["particle_classifier_v1"], ready_timeout_s=40)
    with pytest.raises(ServerError, match="failed to start") as err:
        server.start()
    kept = Path(re.search(r"--- (\S+) \(last lines", str(err.value)).group(1))
    try:
        assert kept.is_file() and "banana" in kept.read_text()
        assert "axon-triton-" not in str(kept)  # not inside the removed work directory
    finally:
        kept.unlink(missing_ok=True)


def test_plugin_hands_valid_budgets_to_the_fixture(pytester):
    pytester.makepyfile("""
def test_budgets(axon_budgets):
    assert [b.name for b in axon_budgets] == ["fast"]
    assert axon_budgets[0].selector == {"batching": "on"}
""")
    pytester.makefile(".toml", slo='[[slo]]\nname = "fast"\nbatching = "on"\np50_ms = 7\n')
    result = pytester.runpytest_subprocess("--axon-slo-file", "slo.toml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


def test_docker_backend_names_the_missing_gpu_repository(tmp_path, monkeypatch):
    from axon.serving import backends, docker

    monkeypatch.setattr(docker, "docker_unavailable_reason", lambda variant=None: None)  # as on a GPU machine
    server = backends.DockerServer(
        "off", models=["particle_classifier_v1"], compose_file=tmp_path / "docker-compose.yml", variant="gpu"
    )
    with pytest.raises(
        ServerError,
        match=r"batching_off, which lacks particle_classifier_v1; write it with `axon train --gpu-repository model_repository`",
    ):
        server.start()


# --------------------------------------------------------------------------- the plugin's own bad inputs

PLUGIN_BAD = {
    "artifacts-missing": (["--axon-artifacts", "/nonexistent-art"], "--axon-artifacts /nonexistent-art: no such folder"),
    "artifacts-not-trained": (["--axon-artifacts", "."], "--axon-artifacts .: no manifest.json there"),
    "url-without-port": (
        ["--triton=external", "--triton-url", "localhost"],
        "--triton-url must be HOST:PORT of Triton's gRPC endpoint, got 'localhost'",
    ),
    "docker-without-engine": (["--triton=docker"], "--triton=docker: the docker backend needs"),
}


@pytest.mark.parametrize("case", PLUGIN_BAD.values(), ids=PLUGIN_BAD.keys())
def test_plugin_bad_inputs_stop_the_session_before_any_case(pytester, case, monkeypatch, tmp_path):
    args, message = case
    if args == ["--triton=docker"]:
        take_away(monkeypatch, tmp_path / "bin", *DOCKER)  # a machine without a container engine, even where CI has one
    pytester.makepyfile(PLUGIN_CASES)
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert err.count(message) == 1 and "Traceback" not in err, err
    if args == ["--triton=docker"]:
        assert "pass --triton-skip-unavailable to skip the benchmark cases instead" in err
    assert "test_case" not in result.stdout.str()


def test_plugin_skips_docker_cases_only_when_asked(pytester, artifacts, monkeypatch, tmp_path):
    take_away(monkeypatch, tmp_path / "bin", *DOCKER)  # a machine without a container engine, even where CI has one
    assert backends.docker_unavailable_reason() is not None
    pytester.makepyfile("def test_docker(axon_servers):\n    axon_servers.get('on')\n")
    result = pytester.runpytest_subprocess(
        "--triton=docker", "--triton-skip-unavailable", "--axon-artifacts", str(artifacts), "-p", "no:cacheprovider", "-rs"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*the docker backend needs*"])


def test_engine_messages_name_the_plugins_options(monkeypatch):
    from axon import engines
    from axon.pytest_plugin.options import OPTIONS

    # Both machines, whichever this is: the lookup of h2load forced each way.
    monkeypatch.setattr(engines.base, "h2load_version", lambda: "nghttp2/1.52.0")
    with pytest.raises(AxonError) as err:
        engines.choose("native", "closed", has_metrics=False, options=OPTIONS)
    assert str(err.value).startswith("--axon-engine native can't run this case") and "(give --triton-metrics-url)" in str(
        err.value
    )
    assert "give --triton-metrics-url" in engines.choose("auto", "closed", has_metrics=False, options=OPTIONS).notice
    assert "give --metrics-url" in engines.choose("auto", "closed", has_metrics=False).notice
    monkeypatch.setattr(engines.base, "h2load_version", lambda: None)
    with pytest.raises(AxonError, match=r"^--axon-engine native can't run this case: h2load not found \(install h2load"):
        engines.choose("native", "closed", has_metrics=True, options=OPTIONS)
    assert engines.choose("auto", "closed", has_metrics=True, options=OPTIONS).notice.startswith(
        "auto engine fell back to python: h2load not found"
    )
