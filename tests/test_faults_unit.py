"""The fault-handling pieces on their own: virtual time, a scripted server, real files and signals."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal

import pytest

from axon import engines, interrupts
from axon.engines.loadgen import (
    ABORT_AFTER_UNAVAILABLE,
    NOT_FOUND,
    OK,
    UNAVAILABLE,
    UNAVAILABLE_BACKOFF_S,
    LoadSpec,
    Outcome,
    Recorder,
    closed_loop,
)
from axon.errors import AxonError
from axon.records import results
from axon.serving.endpoints import tls_problem
from tests.fakeclock import run_virtual


class Outage:
    """Answers OK in 1 ms, except UNAVAILABLE (at once) from t=1 s to t=3 s: a server restarting."""

    def __init__(self, clock, down=(1.0, 3.0), code=UNAVAILABLE):
        self.clock, self.down, self.code = clock, down, code
        self.calls = 0

    async def __call__(self, i):
        self.calls += 1
        if self.down[0] <= self.clock() < self.down[1]:
            await asyncio.sleep(0.0001)
            return Outcome(self.code, None, "server says no")
        await asyncio.sleep(0.001)
        return Outcome(OK, b"")


def _closed(stop_when_gone: bool, code=UNAVAILABLE, duration=5.0, concurrency=4):
    async def go(clock):
        server = Outage(clock, code=code)
        rec = Recorder(0.0, duration, stop_when_gone=stop_when_gone, timeline_s=1.0)
        await closed_loop(server, 10, concurrency, rec, clock, asyncio.Event())
        return rec, server, clock()

    return run_virtual(go)


def test_default_stops_at_the_outage():
    rec, _, ended = _closed(stop_when_gone=True)
    assert rec.server_gone and rec.gone_reason == "server unavailable" and ended < 1.1
    assert rec.failures[UNAVAILABLE] >= ABORT_AFTER_UNAVAILABLE and rec.outages == 1


def test_continue_rides_out_the_outage_with_bounded_failures():
    rec, server, ended = _closed(stop_when_gone=False)
    assert not rec.server_gone and ended >= 5.0  # ran the whole window
    # 4 workers pausing 50 ms after each failure over a 2 s outage: about 4 * 2 / 0.05 failures, not millions.
    expected = 4 * 2.0 / UNAVAILABLE_BACKOFF_S
    assert 0.8 * expected <= rec.failures[UNAVAILABLE] <= 1.2 * expected + 4
    ok_per_slice = {i: s.ok for i, s in rec.slices.items()}
    failed_per_slice = {i: s.failed for i, s in rec.slices.items()}
    assert ok_per_slice[1] == ok_per_slice[2] == 0 and failed_per_slice[1] > 0  # the outage
    assert ok_per_slice[3] > 0 and ok_per_slice[4] > 0  # resumed
    assert rec.outages == 1 and rec.details == {UNAVAILABLE: "server says no"}


def test_a_model_gone_stops_with_the_servers_message():
    rec, _, _ = _closed(stop_when_gone=True, code=NOT_FOUND)
    assert rec.server_gone and rec.gone_reason == "model not served: server says no"
    assert set(rec.failures) == {NOT_FOUND}


def test_alternating_codes_are_not_a_streak():
    rec = Recorder(0.0, 10.0)
    for k in range(3 * ABORT_AFTER_UNAVAILABLE):
        rec.record(0, 1.0, 1.001, Outcome(UNAVAILABLE if k % 2 else NOT_FOUND))
    assert not rec.gone and rec.outages == 0


def test_on_unavailable_and_timeline_are_validated():
    with pytest.raises(AxonError, match="on_unavailable"):
        LoadSpec("m", concurrency=1, on_unavailable="retry").validate()
    with pytest.raises(AxonError, match="timeline"):
        LoadSpec("m", concurrency=1, timeline_s=0).validate()


def test_engine_choice_for_tls_and_continue(monkeypatch):
    monkeypatch.setattr(engines.base, "h2load_version", lambda: "nghttp2/1.52.0")
    tls = engines.choose("auto", "closed", True, tls=True)
    assert tls.name == "python" and "verifies the server's certificate" in tls.notice
    native = engines.choose("native", "closed", True, tls=True)
    assert native.name == "native" and native.notice == engines.H2LOAD_TLS_UNVERIFIED
    cont = engines.choose("auto", "closed", True, on_unavailable="continue")
    assert cont.name == "python" and "does not reconnect" in cont.notice
    with pytest.raises(AxonError, match="does not reconnect"):
        engines.choose("native", "closed", True, on_unavailable="continue")


def test_tls_problem_reads_grpcs_handshake_errors():
    message = "[StatusCode.UNAVAILABLE] failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): CERTIFICATE_VERIFY_FAILED"
    assert tls_problem(message, "ca.pem").startswith(
        "TLS handshake failed: the server's certificate is not trusted by the CA file ca.pem"
    )
    assert "--ca-file" in tls_problem(message, None)
    assert tls_problem("[StatusCode.UNAVAILABLE] failed to connect to all addresses; Connection refused", None) is None


def test_save_results_rescues_the_record(tmp_path, monkeypatch):
    runs = [{"requests": {"ok": 1}}]
    written, problem = results.save_results(tmp_path / "r.json", runs)
    assert written == tmp_path / "r.json" and problem is None
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setattr(results.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    written, problem = results.save_results(blocked / "r.json", runs)
    assert written == tmp_path / "tmp" / results.RESCUE_DIR_NAME / "r.json" and str(blocked) in problem
    assert json.loads(written.read_text())["runs"] == runs


def test_save_results_prints_the_record_when_nothing_takes_it(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setattr(results, "rescue_paths", lambda path: [blocked / "a.json", blocked / "b.json"])
    with pytest.raises(AxonError, match="printed on stdout"):
        results.save_results(blocked / "r.json", [{"x": 1}])
    assert json.loads(capsys.readouterr().out)["runs"] == [{"x": 1}]


def test_second_ctrl_c_only_prints():
    out = io.StringIO()
    before = signal.getsignal(signal.SIGINT)
    with interrupts.stop_once(out) as handler:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs in this thread before the next line
            raise AssertionError("the first Ctrl-C must raise")
        os.kill(os.getpid(), signal.SIGINT)  # the shutdown goes on
        os.kill(os.getpid(), signal.SIGINT)
    assert handler.presses == 3
    assert out.getvalue().splitlines() == [interrupts.STOPPING, interrupts.ALREADY_STOPPING, interrupts.ALREADY_STOPPING]
    assert signal.getsignal(signal.SIGINT) is before
