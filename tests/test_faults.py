"""The fault matrix against the real embedded Triton: each case names the record it expects.

Every fault is triggered on a signal from axon itself (its progress line saying requests are
being measured in the window, or a metrics scrape it made), never on "by now N requests have
passed", so the tests do not depend on the machine's speed. What each case observed goes to
docs/reliability.md (see tests/faultlog.py and scripts/reliability_doc.py).

| case | fault | expected record |
|---|---|---|
| a | server SIGSTOPped 3 s mid-window, --timeout 1 | python: DEADLINE_EXCEEDED counted, run complete, a stretch of the timeline with no OK request, exit 1 (error budget 0); native: no failure, max latency >= the stall, still verified |
| b | server SIGKILLed and restarted on the same ports | stop (default): UNAVAILABLE counted, incomplete "server unavailable", exit 2; continue: complete, UNAVAILABLE counted, OK requests after the restart |
| c | model unloaded mid-run (model-control API) | python: NOT_FOUND counted, incomplete "model not served: <Triton's message>", exit 2; native: unverified against Triton's counters, not passed |
| d | metrics endpoint unreachable at the window's end | client record kept; server_metrics null and server_metrics_missing says why; python passes, native is unverified |
| e | results path unwritable / disk full at write time | exit 2 naming a rescue path that holds every run; an unwritable --output is refused before any load |
| f | Ctrl-C twice | exit 130, the second press only says "already stopping", partial record kept, no process left |
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
import tritonclient.grpc as grpcclient

from axon import interrupts
from axon.records import results
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from axon.serving.endpoints import free_port
from tests.faultlog import observe
from tests.helpers import LineWatcher, assert_clean_error, run_axon, start_axon, window_under_way

pytestmark = pytest.mark.server
V1 = "particle_classifier_v1"
STALL_S = 3.0
WINDOW_WAIT_S = 120  # how long a test waits for axon's first progress line inside the window (a slow start)
EXIT_WAIT_S = 90


def _need_h2load(engine: str) -> None:
    if engine == "native" and shutil.which("h2load") is None:
        if os.environ.get("CI"):
            pytest.fail("h2load is missing on CI: make setup should have installed nghttp2-client")
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")


@pytest.fixture(scope="module")
def server(artifacts):
    """One embedded server (batching on, v1, explicit model control) for the cases that leave it as they found it."""
    with EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1]) as s:
        yield s


class _Bench:
    """`axon bench` in a child process, its stderr followed line by line."""

    def __init__(self, *args: str, new_session: bool = False):
        if new_session:  # its own process group, as a terminal's Ctrl-C reaches it
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "axon.cli", "bench", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        else:
            self.proc = start_axon("bench", *args)
        self.stderr = LineWatcher(self.proc.stderr)
        self._stdout: list[str] = []
        self._reader = threading.Thread(target=lambda: self._stdout.append(self.proc.stdout.read()), daemon=True)
        self._reader.start()

    def wait_window(self) -> None:
        self.stderr.wait_for(window_under_way, timeout_s=WINDOW_WAIT_S)

    def finish(self, timeout_s: float = EXIT_WAIT_S) -> subprocess.CompletedProcess:
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, "".join(self._stdout), self.stderr.rest())


def _common(server, artifacts, out: Path, *extra: str, metrics: bool = True) -> list[str]:
    ep = server.endpoints
    args = ["--url", ep.grpc, "--artifacts", str(artifacts), "--output", str(out), "--warmup", "0.5", *extra]
    return args + (["--metrics-url", ep.metrics] if metrics else [])


def _only_run(path: Path) -> dict:
    (run,) = json.loads(path.read_text())["runs"]
    return run


# --------------------------------------------------------------------------- a: stalled server


@pytest.mark.parametrize("engine", ["python", "native"])
def test_a_stalled_server(server, artifacts, tmp_path, engine):
    _need_h2load(engine)
    out = tmp_path / "stall.json"
    # A 10 s window: the stall starts at the first progress line inside it (at most ~2.5 s in) and lasts 3 s.
    bench = _Bench(
        *_common(
            server,
            artifacts,
            out,
            "--engine",
            engine,
            "--concurrency",
            "8",
            "--duration",
            "10",
            "--timeout",
            "1",
            "--timeline",
            "0.5",
        )
    )
    try:
        bench.wait_window()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            time.sleep(STALL_S)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        done = bench.finish()
    finally:
        os.kill(server.pid, signal.SIGCONT)
    run = _only_run(out)
    assert run["complete"], run["incomplete_reason"]
    assert "Traceback" not in done.stderr
    if engine == "python":
        timeouts = run["requests"]["failures"].get("DEADLINE_EXCEEDED", 0)
        assert timeouts >= 8, run["requests"]  # every one of the 8 workers timed out at least once
        assert run["requests"]["timed_out"] == timeouts and set(run["requests"]["failures"]) == {"DEADLINE_EXCEEDED"}
        # The stall in the timeline: slices (by send time) in which every request timed out.
        stalled = [s for s in run["timeline"] if s["ok"] == 0]
        assert stalled and any(s["failed"] for s in stalled), run["timeline"]
        assert len(run["timeline"]) == 20  # every slice of the window, the empty ones of the stall included
        assert not run["passed"] and done.returncode == 1  # the error budget (0 by default) decides the exit
        assert "DEADLINE_EXCEEDED" in run["verdicts"][0]
        expected = "DEADLINE_EXCEEDED counted; run complete; the timeline shows the stall (slices with 0 OK); exit 1 under the default error budget of 0"
    else:
        # h2load has no per-request deadline: the requests in flight wait out the stall and the tail shows it.
        assert run["requests"]["failed"] == 0 and run["latency_ms"]["max"] >= (STALL_S - 1) * 1e3, run["latency_ms"]
        assert run["verification"]["verified"] and run["passed"] and done.returncode == 0, run["verdicts"]
        expected = "no failure (h2load has no per-request deadline); max latency >= the stall; counts still verified against Triton; exit 0"
    observe(f"a-stall-{engine}", "server SIGSTOPped 3 s mid-window, --timeout 1", expected, run, done.returncode)


# --------------------------------------------------------------------------- b: killed and restarted


class _Restartable:
    """An embedded server on fixed ports, SIGKILLed and started again on the same ports."""

    def __init__(self, artifacts):
        self.artifacts = artifacts
        self.ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
        self.server: EmbeddedServer | None = None
        self.startup_s: list[float] = []

    def start(self) -> EmbeddedServer:
        self.server = EmbeddedServer(embedded_repository(self.artifacts, "on"), models=[V1], **self.ports)
        self.server.start()
        self.startup_s.append(self.server.startup_s)
        return self.server

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.server.pid, signal.SIGKILL)  # tritonserver and its stubs, no goodbye
        self.server.stop()  # reaps what the kill left, removes the work folder

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="module")
def restartable(artifacts):
    r = _Restartable(artifacts)
    r.start()
    yield r
    r.stop()


def test_b_restart_default_stops_the_run(restartable, artifacts, tmp_path):
    out = tmp_path / "restart-stop.json"
    bench = _Bench(
        *_common(
            restartable.server, artifacts, out, "--engine", "python", "--concurrency", "8", "--duration", "60", "--timeout", "3"
        )
    )
    try:
        bench.wait_window()
        restartable.kill()
        restartable.start()
        done = bench.finish()
    finally:
        if bench.proc.poll() is None:
            bench.proc.kill()
    assert_clean_error(done, "run incomplete (server unavailable)", str(out))
    run = _only_run(out)
    assert run["complete"] is False and run["incomplete_reason"] == "server unavailable"
    assert run["requests"]["ok"] > 0 and run["requests"]["failures"].get("UNAVAILABLE", 0) > 0
    observe("b-restart-stop", "server killed and restarted on the same ports (default --on-unavailable stop)",
            "UNAVAILABLE counted; the run stops at once, marked incomplete (server unavailable); exit 2", run, done.returncode)  # fmt: skip


def test_b_restart_with_continue_resumes(restartable, artifacts, tmp_path):
    out = tmp_path / "restart-continue.json"
    # The window must outlast a restart: sized from this machine's own start-up time, with room to spare.
    duration = max(15.0, 2 * max(restartable.startup_s) + 10)
    bench = _Bench(
        *_common(
            restartable.server,
            artifacts,
            out,
            "--engine",
            "python",
            "--concurrency",
            "8",
            "--duration",
            f"{duration:.0f}",
            "--timeout",
            "3",
            "--on-unavailable",
            "continue",
            "--timeline",
            "1",
        )
    )
    try:
        bench.wait_window()
        restartable.kill()
        killed_at = time.monotonic()
        restarted = restartable.start()
        outage_s = time.monotonic() - killed_at
        done = bench.finish(timeout_s=duration + EXIT_WAIT_S)
    finally:
        if bench.proc.poll() is None:
            bench.proc.kill()
    run = _only_run(out)
    assert run["complete"] and run["incomplete_reason"] is None, run["incomplete_reason"]
    assert run["load"]["on_unavailable"] == "continue"
    assert run["requests"]["failures"].get("UNAVAILABLE", 0) > 0
    # Resumed: the restarted server (its counters start at zero) served the run's requests ...
    stats = grpcclient.InferenceServerClient(restarted.endpoints.grpc).get_inference_statistics(V1).model_stats[0]
    assert stats.inference_stats.success.count > 0
    # ... and the record shows it: after the slices with failures, slices with OK requests again.
    timeline = run["timeline"]
    first_failing = next(i for i, s in enumerate(timeline) if s["failed"] > 0)
    assert any(s["ok"] > 0 for s in timeline[first_failing + 1 :]), timeline
    # Each server counts from zero: the record says why it has no server deltas instead of showing wrong ones.
    assert run["server_metrics"] is None and "restart" in run["server_metrics_missing"] and run["requests"]["outages"] >= 1
    assert not run["passed"] and done.returncode == 1 and "UNAVAILABLE" in run["verdicts"][0]
    observe("b-restart-continue", "server killed and restarted on the same ports, --on-unavailable continue",
            "UNAVAILABLE counted; the run resumes after the restart and completes; server deltas missing (counters restarted); exit 1 (error budget)",
            run, done.returncode, outage_s=round(outage_s, 1))  # fmt: skip


def test_b_continue_is_refused_by_the_native_engine(tmp_path):
    assert_clean_error(
        run_axon("bench", "--engine", "native", "--on-unavailable", "continue", "--artifacts", str(tmp_path)),
        "h2load does not reconnect",
    )


# --------------------------------------------------------------------------- c: model unloaded


@pytest.mark.parametrize("engine", ["python", "native"])
def test_c_model_unloaded_mid_run(server, artifacts, tmp_path, engine):
    _need_h2load(engine)
    out = tmp_path / "unloaded.json"
    control = grpcclient.InferenceServerClient(server.endpoints.grpc)
    bench = _Bench(
        *_common(server, artifacts, out, "--engine", engine, "--concurrency", "8", "--duration", "8", "--timeout", "3")
    )
    try:
        bench.wait_window()
        control.unload_model(V1)
        done = bench.finish()
    finally:
        control.load_model(V1)  # as the other cases found it
        if bench.proc.poll() is None:
            bench.proc.kill()
    run = _only_run(out)
    if engine == "python":
        assert run["requests"]["ok"] > 0
        message = "Request for unknown model: 'particle_classifier_v1'"
        assert_clean_error(done, "run incomplete (model not served: " + message)
        assert run["complete"] is False and run["incomplete_reason"].startswith("model not served: " + message)
        assert run["requests"]["failures"].get("NOT_FOUND", 0) > 0 and message in run["requests"]["failure_details"]["NOT_FOUND"]
        expected = (
            "NOT_FOUND counted with Triton's message; the run stops (model gone), incomplete: model not served: <message>; exit 2"
        )
    else:
        # h2load reads no gRPC status (HTTP 200 + grpc-status 5 is a success to it); Triton's counters tell.
        assert not run["passed"] and run["verification"]["verified"] is False, run["verification"]
        assert any(v.startswith("unverified: Triton counted") for v in run["verdicts"]), run["verdicts"]
        assert done.returncode == 1
        # h2load's completions after the unload are not answers: only what Triton's counters confirm is shown as answered.
        assert run["throughput_basis"] in ("server", "none") and run["requests"]["ok"] < run["latency_apart"]["requests"]
        assert run["latency_ms"]["count"] == 0 and run["requests"]["failures"]["UNCONFIRMED"] > 0
        expected = (
            "h2load sees HTTP 200 (no gRPC status): the counts disagree with Triton's, the run is unverified, not passed; "
            "ok is only what Triton's counters confirm, the rest UNCONFIRMED, no latency shown as answered; exit 1"
        )
    observe(f"c-unload-{engine}", "model unloaded mid-run through the model-control API", expected, run, done.returncode)


# --------------------------------------------------------------------------- d: metrics endpoint gone


class _MetricsProxy:
    """A TCP forwarder in front of Triton's metrics port that the test can take away.

    It counts the scrapes it forwarded: the test acts on that signal from axon, not on time.
    """

    def __init__(self, target_url: str):
        host_port = target_url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/metrics"
        self.served = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed: from now on, connection refused
            with client, socket.create_connection(self.target, timeout=10) as upstream:
                client.settimeout(10)
                request = client.recv(65536)
                upstream.sendall(request)
                while chunk := upstream.recv(65536):
                    client.sendall(chunk)
            with self._cond:
                self.served += 1
                self._cond.notify_all()

    def wait_served(self, n: int, timeout_s: float = WINDOW_WAIT_S) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.served >= n, timeout=timeout_s), (
                f"axon made {self.served} scrapes, expected {n}"
            )

    def close(self) -> None:
        # shutdown() first: close() alone leaves a socket that a thread blocks in accept() on still listening.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(10)


@pytest.mark.parametrize("engine", ["python", "native"])
def test_d_metrics_endpoint_gone_at_the_window_end(server, artifacts, tmp_path, engine):
    _need_h2load(engine)
    out = tmp_path / "metrics.json"
    proxy = _MetricsProxy(server.endpoints.metrics)
    args = _common(
        server, artifacts, out, "--engine", engine, "--concurrency", "8", "--duration", "6", "--timeout", "3", metrics=False
    )
    bench = _Bench(*args, "--metrics-url", proxy.url)
    try:
        bench.wait_window()
        # Once when the server is checked, before any load; then python once at the window's
        # start, native once before h2load starts and once inside the window.
        proxy.wait_served(2 if engine == "python" else 3)
        proxy.close()
        done = bench.finish()
    finally:
        proxy.close()
    run = _only_run(out)
    assert run["complete"] and run["server_metrics"] is None
    missing = run["server_metrics_missing"]
    assert "cannot scrape Triton metrics" in missing and proxy.url in missing, missing
    assert "no server metrics for this run" in done.stderr
    if engine == "python":
        assert run["requests"]["ok"] > 0 and run["requests"]["failed"] == 0
        assert "window's end" in missing and run["passed"] and done.returncode == 0
        expected = (
            "client record kept, passed; server_metrics null, server_metrics_missing names the window's end and the error; exit 0"
        )
    else:
        assert run["verification"]["verified"] is False and not run["passed"] and done.returncode == 1
        # Without Triton's counts nothing h2load completed is confirmed: no request shown as answered, no throughput.
        assert run["throughput_basis"] == "none" and run["requests"]["ok"] == 0 and run["throughput_rps"] != run["throughput_rps"]
        assert run["requests"]["failures"] == {"UNCONFIRMED": run["requests"]["sent"]}
        expected = (
            "client record kept, complete; server_metrics_missing says why; counts unverified (Triton's metrics needed), not passed; "
            "no request confirmed (ok 0, h2load's completions UNCONFIRMED, no throughput); exit 1"
        )
    observe(f"d-metrics-{engine}", "metrics endpoint unreachable at the window's end", expected, run, done.returncode)


# --------------------------------------------------------------------------- e: results unwritable


def _rescued(done: subprocess.CompletedProcess) -> Path:
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("axon: error: cannot write results"))
    return Path(line.rsplit("every run is in ", 1)[1].strip())


def test_e_results_folder_gone_at_write_time(server, artifacts, tmp_path):
    folder = tmp_path / "results"
    out = folder / f"faults-{uuid.uuid4().hex[:8]}.json"
    bench = _Bench(*_common(server, artifacts, out, "--engine", "python", "--concurrency", "4", "--duration", "4"))
    bench.wait_window()
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("a file where the results folder was")  # a path that can't take the file any more
    done = bench.finish()
    assert_clean_error(done, f"cannot write results to {out} ({folder} is a file, not a folder)", "nothing was lost")
    rescue = _rescued(done)
    try:
        assert rescue.parent == Path(results.rescue_paths(out)[0]).parent and rescue.name == out.name
        run = _only_run(rescue)
        assert run["complete"] and run["requests"]["ok"] > 0
    finally:
        rescue.unlink(missing_ok=True)
    observe("e-unwritable", "results path unwritable at write time (its folder replaced by a file)",
            "exit 2: 'cannot write results to <path> (<folder> is a file, not a folder); nothing was lost: every run is in <tmp>/axon-rescued/<name>'; the rescued record is complete",
            run, done.returncode, message=done.stderr.strip().splitlines()[-1])  # fmt: skip


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (needs root, or CAP_SYS_ADMIN): a real disk that fills up."""
    where = tmp_path / "small-disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here to fill ({done.stderr.strip() or 'mount failed'}); run as root for the disk-full case"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_e_disk_full_at_write_time(server, artifacts, full_disk):
    out = full_disk / f"faults-{uuid.uuid4().hex[:8]}.json"
    bench = _Bench(*_common(server, artifacts, out, "--engine", "python", "--concurrency", "4", "--duration", "4"))
    bench.wait_window()
    _fill(full_disk)  # the check before the load passed; the disk fills during the window
    done = bench.finish()
    assert_clean_error(done, f"cannot write results to {out} (No space left on device", "nothing was lost")
    rescue = _rescued(done)
    try:
        run = _only_run(rescue)
        assert run["complete"] and run["requests"]["ok"] > 0
    finally:
        rescue.unlink(missing_ok=True)
    assert not out.exists() and not [p for p in full_disk.iterdir() if p.name.startswith(".")]  # no half-written file left
    observe("e-disk-full", "disk full at write time (a 256 KiB tmpfs filled mid-run)",
            "exit 2: 'cannot write results to <path> (No space left on device); nothing was lost: every run is in <rescue path>'; no partial file left",
            run, done.returncode, message=done.stderr.strip().splitlines()[-1])  # fmt: skip


def test_e_unwritable_output_is_refused_before_any_load(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    started = time.monotonic()
    # 127.0.0.1:9 answers nothing: an error about the server would mean the check came too late.
    done = run_axon("bench", "--url", "127.0.0.1:9", "--output", str(blocker / "r.json"))
    assert_clean_error(done, f"cannot write results to {blocker / 'r.json'}")
    assert "unreachable" not in done.stderr and time.monotonic() - started < 60
    assert_clean_error(run_axon("bench", "--url", "127.0.0.1:9", "--output", str(tmp_path)), "is a folder")
    observe("e-precheck", "--output not writable, found before the load starts", "exit 2 at once, before any server is contacted: 'cannot write results to <path>: <why>'",
            exit_code=done.returncode, message=done.stderr.strip())  # fmt: skip


# --------------------------------------------------------------------------- f: Ctrl-C twice


def test_f_ctrl_c_twice(artifacts, tmp_path):
    out = tmp_path / "ctrl-c.json"
    # axon starts its own server and two worker processes here, so "no orphan" covers all of them.
    bench = _Bench("--artifacts", str(artifacts), "--output", str(out), "--engine", "python", "--processes", "2", "--concurrency", "8",
                   "--duration", "60", "--warmup", "0.5", "--timeout", "3", new_session=True)  # fmt: skip
    server = None
    try:
        bench.wait_window()
        tree = psutil.Process(bench.proc.pid).children(recursive=True)
        server = next(p for p in tree if p.name() == "tritonserver")
        assert len(tree) >= 4, tree  # tritonserver, a python-backend stub, 2 workers
        # Freeze the server so the shutdown the first Ctrl-C starts can't be over before the second.
        server.suspend()
        os.killpg(bench.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        bench.stderr.wait_for(lambda ln: ln.startswith(interrupts.STOPPING), timeout_s=30)
        os.killpg(bench.proc.pid, signal.SIGINT)
        bench.stderr.wait_for(lambda ln: ln.startswith(interrupts.ALREADY_STOPPING), timeout_s=30)
        server.resume()
        done = bench.finish()
    finally:
        with contextlib.suppress(psutil.Error):
            if server is not None:
                server.resume()
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "axon: interrupted" in done.stderr
    run = _only_run(out)
    assert run["complete"] is False and run["incomplete_reason"] == "interrupted" and run["requests"]["ok"] > 0
    _gone, alive = psutil.wait_procs(tree, timeout=20)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    observe("f-ctrl-c-twice", "Ctrl-C pressed twice (to the process group, as a terminal does)",
            "exit 130; the second press prints 'already stopping' and changes nothing; partial record kept (incomplete: interrupted); server, stubs and workers all gone",
            run, done.returncode, processes_checked=len(tree))  # fmt: skip
