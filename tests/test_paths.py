"""Trigger paths: several models per event on one shared server, against the real embedded Triton."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from axon.errors import AxonError
from axon.names import served_name
from axon.workload.path import load
from tests import onnx_models
from tests.helpers import assert_clean_error, run_axon

V1, V2 = served_name("v1"), served_name("v2")
TWO_STEPS = """name = "hlt-demo"
[[steps]]
calls = [{ model = "v1", rows = 1 }]
[[steps]]
calls = [{ model = "v2", rows = 16 }, { model = "v1", rows = 4 }]
client_ms = 0.2
"""
STALL_S = 1.5
pytest_plugins = ["pytester"]


def _write(tmp_path, text: str, name: str = "path.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the file


def test_a_path_file_reads_as_steps_of_calls(tmp_path):
    path = load(_write(tmp_path, TWO_STEPS), served_name)
    assert path.name == "hlt-demo" and path.models == [V1, V2]
    assert [[(c.model, c.rows) for c in s.calls] for s in path.steps] == [[(V1, 1)], [(V2, 16), (V1, 4)]]
    assert [s.client_ms for s in path.steps] == [0.0, 0.2]
    assert path.calls_per_event() == {V1: 2, V2: 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\n[[steps]]\ncalls = [{ model = "v1", rows = 1 }\n', "not valid TOML: "),
        ('name = "x"\n', "the path has no steps"),
        ('name = "x"\n[[steps]]\ncalls = []\n', "line 3 (step 1): the step has no calls"),
        (
            'name = "x"\n[[steps]]\ncalls = [{ model = "v1", rows = 1 }]\n[[steps]]\ncalls = [{ model = "v1", rows = 0 }]\n',
            "line 5 (step 2, call 1): rows must be a whole number > 0",
        ),
        ('[[steps]]\ncalls = [{ model = "v1" }]\nclient_ms = -1\n', "line 3 (step 1): client_ms must be a number >= 0"),
        ('[[steps]]\ncalls = [{ model = "v1" }]\nwait_ms = 1\n', "line 3 (step 1): unknown key 'wait_ms'"),
        ("[[steps]]\ncalls = [{ rows = 2 }]\n", "line 2 (step 1, call 1): a call names a model"),
        ('[[steps]]\ncalls = [{ onnx = "nope.onnx" }]\n', "onnx 'nope.onnx': no such file"),
    ],
)
def test_every_mistake_in_a_path_file_is_one_line_with_its_line(tmp_path, text, message):
    with pytest.raises(AxonError) as err:
        load(_write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"--path {tmp_path / 'path.toml'}")


def test_bad_path_options_are_one_line_before_any_server(tmp_path, artifacts):
    path = _write(tmp_path, TWO_STEPS)
    base = ["bench", "--artifacts", str(artifacts), "--duration", "1"]
    assert_clean_error(run_axon(*base, "--path", str(tmp_path / "none.toml")), "no such file")
    assert_clean_error(run_axon(*base, "--path", str(path), "--model", "v2"), "--model does not go with --path")
    assert_clean_error(run_axon(*base, "--path", str(path), "--engine", "native"), "can't keep a path's order")
    assert_clean_error(run_axon(*base, "--path", str(path), "--requests", "10"), "--requests does not go with --path yet")
    assert_clean_error(run_axon(*base, "--path", str(path), "--dask", "tcp://127.0.0.1:1"), "cannot reach the Dask scheduler")
    assert_clean_error(
        run_axon(*base, "--path", str(_write(tmp_path, '[[steps]]\ncalls = [{ model = "v1", rows = -2 }]\n', "bad.toml"))),
        "line 2",
        "rows must be",
    )
    unknown = _write(tmp_path, '[[steps]]\ncalls = [{ model = "tagger" }]\n', "unknown.toml")
    assert_clean_error(run_axon(*base, "--path", str(unknown)), "model 'tagger' is neither one `axon train` built")


# --------------------------------------------------------------------------- the real server


def _run(server, path_text, tmp_path, **load):
    from axon.case import Target, run_path
    from axon.engines.loadgen import LoadSpec
    from axon.engines.payloads import trained_feed

    path = load_path(tmp_path, path_text)
    return path, lambda artifacts, **extra: run_path(
        path,
        LoadSpec(
            f"path:{path.name}",
            duration_s=load.get("duration_s", 1.5),
            warmup_s=load.get("warmup_s", 0.3),
            timeout_s=10.0,
            sample_every=1,
            concurrency=load.get("concurrency"),
            rate=load.get("rate"),
        ),
        Target.of(server, "on"),
        {m: trained_feed(artifacts, m)[0] for m in path.models},
        {m: artifacts / "models" / m / "model.onnx" for m in path.models},
        {"name": "test"},
        **extra,
    )


def load_path(tmp_path, text):
    return load(_write(tmp_path, text), served_name)


def test_a_two_step_path_is_counted_by_triton_call_for_call(server_v1, artifacts, tmp_path):
    path, run = _run(server_v1, TWO_STEPS, tmp_path, concurrency=4)
    record = run(artifacts)
    assert record["passed"], record["verdicts"]
    assert record["model"] == "path:hlt-demo" and record["engine"]["name"] == "events"
    section = record["path"]
    assert section["verification"]["verified"], section["verification"]
    events = section["events_ok_whole_run"]
    assert events > 0 and record["requests"]["ok"] > 0
    for model, per_event in path.calls_per_event().items():
        entry = section["models"][model]
        # Every event's calls, warm-up included, and Triton's own count of them agree.
        assert entry["calls_ok"] == per_event * events == entry["server"]["success_count"], (model, entry)
    first_step = [c for c in section["calls"] if c["step"] == 1][0]
    assert record["latency_ms"]["p50"] >= first_step["latency_ms"]["p50"]
    assert record["correctness"]["enabled"] and record["correctness"]["checked"] > 0 and record["correctness"]["mismatches"] == 0


def test_an_open_loop_path_shows_a_server_stall_in_its_event_latency(artifacts, tmp_path):
    """Events arrive on schedule while the server is stopped for 1.5 s: their latency, timed from
    the intended start, must carry the stall (no coordinated omission)."""
    from axon.serving.backends import embedded_repository
    from axon.serving.embedded import EmbeddedServer

    stalled = threading.Event()

    with EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1, V2]) as server:
        pid = server.process.pid

        def on_progress(elapsed_s: float, events: int, p99_ms: float) -> None:
            # The engine's own word that the window is under way, with events measured.
            if events > 0 and not stalled.is_set():
                stalled.set()
                os.kill(pid, signal.SIGSTOP)
                threading.Timer(STALL_S, os.kill, (pid, signal.SIGCONT)).start()

        _, run = _run(server, TWO_STEPS, tmp_path, rate=40.0, duration_s=4.0, warmup_s=0.3)
        try:
            record = run(artifacts, on_progress=on_progress)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert stalled.is_set(), "the window never reported events"
    assert record["complete"], record["incomplete_reason"]
    assert record["latency_ms"]["max"] >= STALL_S * 1e3 * 0.8
    assert record["latency_ms"]["p99"] >= 1000.0, record["latency_ms"]


def test_bench_runs_a_path_with_a_users_onnx_model(artifacts, tmp_path):
    onnx_models.fixed(tmp_path / "fixed.onnx")
    path = _write(
        tmp_path,
        '[[steps]]\ncalls = [{ model = "v1", rows = 2 }, { onnx = "fixed.onnx" }]\n[[steps]]\ncalls = [{ model = "v1" }]\n',
    )
    out = tmp_path / "r.json"
    done = run_axon(
        "bench",
        "--artifacts",
        str(artifacts),
        "--path",
        str(path),
        "--concurrency",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--output",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())["runs"][0]
    assert record["passed"] and record["path"]["verification"]["verified"]
    assert set(record["path"]["models"]) == {V1, "fixed"} and record["path"]["models"]["fixed"]["calls_per_event"] == 1
    assert record["correctness"]["enabled"] and record["correctness"]["mismatches"] == 0
    assert "path:path" in done.stdout and "events" in done.stdout
    # The report's path section: the table, the steps' shares, and a plot with the budget line.
    report = run_axon("report", str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Trigger paths" in text and "| step | calls |" in text and "calls agree, model by model" in text
    from axon.study.report import paths

    fig = paths.plot([record], 25.0)
    ax = fig.axes[0]
    assert [line.get_ydata()[0] for line in ax.lines if line.get_color() == "red"] == [25.0]
    assert ax.get_xlabel().startswith("events per second") and (tmp_path / "report" / paths.PLOT_FILE).is_file()


def test_pytest_face_runs_a_path_and_fails_its_event_budget(pytester, artifacts):
    pytester.makepyfile(
        """
import pytest

@pytest.mark.axon_models
def test_case(axon_bench, model):
    axon_bench(model, "on", concurrency=2)
"""
    )
    pytester.makefile(
        ".toml",
        path=TWO_STEPS,
        slo='[[slo]]\nname = "event-budget"\npath = "hlt-demo"\nevent_p99_ms = 0.001\n\n[[slo]]\nname = "models"\np99_ms = 60000\n',
    )
    args = [
        "--axon-artifacts",
        str(artifacts),
        "--axon-duration",
        "1",
        "--axon-warmup",
        "0.2",
        "-p",
        "no:cacheprovider",
        "--axon-path",
        "path.toml",
        "--axon-slo-file",
        "slo.toml",
    ]
    collected = pytester.runpytest_subprocess(*args, "--collect-only", "-q")
    assert "test_case[path:hlt-demo]" in {line.split("::")[-1] for line in collected.stdout.lines}
    result = pytester.runpytest_subprocess(*args, "-k", "hlt")
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert "event p99" in output and "[event-budget]" in output
    summary = [line for line in output.splitlines() if line.startswith("test_case[path:hlt-demo]")]
    assert summary and " events " in summary[0] and "FAILED: event p99" in summary[0], output
    bad = pytester.runpytest_subprocess("--axon-path", "nope.toml", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "--path nope.toml: no such file" in bad.stderr.str()


def test_an_ab_whose_calls_batching_off_cannot_take_is_refused_before_any_load(artifacts, tmp_path):
    path = _write(tmp_path, TWO_STEPS)
    out = tmp_path / "r.json"
    done = run_axon(
        "bench",
        "--artifacts",
        str(artifacts),
        "--path",
        str(path),
        "--ab",
        "--concurrency",
        "2",
        "--duration",
        "1",
        "--output",
        str(out),
        cwd=tmp_path,
    )
    assert_clean_error(done, f"{V2} takes at most 1 row(s) a request on the server with batching off", "the path sends 16")
    assert not out.exists()  # nothing was measured, so nothing was written
