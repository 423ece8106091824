"""A watched server: a run against a server axon started names its death, and stops before the
server's memory could take the machine down.

The guard's readings are the code under test's own signals: a test sets the limit from what
axon itself read of the server, and kills the server when axon's own progress says the window
is under way; nothing waits for "by now N requests".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading

import pytest

from axon.case import Target, run_case
from axon.engines.loadgen import LoadSpec
from axon.errors import ServerError
from axon.serving.backends import embedded_repository
from axon.serving.embedded import EmbeddedServer
from axon.serving.endpoints import wait_ready
from axon.serving.watch import ServerWatch, not_watched

V1 = "particle_classifier_v1"
LONG = {"duration_s": 60.0, "warmup_s": 0.3, "timeout_s": 5.0, "sample_every": 10, "engine": "python"}


class FakeServer:
    """Memory readings in order, then a death: what a ServerWatch reads of a real server."""

    backend = "fake"

    def __init__(self, readings: list[int], death: str | None = None):
        self.readings, self.died = list(readings), death

    def death(self):
        return self.died if not self.readings else None

    def memory_bytes(self):
        return self.readings.pop(0) if self.readings else None


def test_the_watch_records_peak_and_growth_and_trips_once_over_the_limit():
    mib = 2**20
    watch = ServerWatch(FakeServer([100 * mib, 180 * mib, 150 * mib]), limit_bytes=170 * mib)
    watch.sample()
    assert watch.reason() is None
    watch.sample()
    assert watch.reason().startswith("server memory 180 MiB passed the limit of 170 MiB (--max-server-memory)")
    watch.sample()
    s = watch.summary()
    assert (s["start_bytes"], s["peak_bytes"], s["end_bytes"], s["growth_bytes"]) == (100 * mib, 180 * mib, 150 * mib, 50 * mib)
    assert s["watched"] and s["stopped_by_limit"] and s["limit_bytes"] == 170 * mib and s["samples"] == 3


def test_the_watch_names_a_death_and_a_limit_of_zero_guards_nothing():
    watch = ServerWatch(FakeServer([10, 10**12], death="killed by SIGKILL"), limit_bytes=0)
    for _ in range(3):
        watch.sample()
    assert watch.reason() == "server died: the Triton axon started was killed by SIGKILL"
    s = watch.summary()
    assert s["peak_bytes"] == 10**12 and s["limit_bytes"] is None and not s["stopped_by_limit"]
    # A server whose memory can't be read is said to be unwatched, not watched with no numbers.
    assert ServerWatch(FakeServer([]), 1).summary()["watched"] is False
    assert not_watched()["reason"].endswith("its memory was not watched")


@pytest.fixture
def own_server(artifacts):
    """A server of this test's own: it may be killed."""
    server = EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1])
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _run(server, artifacts, features, limit=None, on_progress=None, engine="python"):
    spec = LoadSpec(V1, concurrency=4, **{**LONG, "engine": engine})
    return run_case(
        spec, Target.of(server, "on", limit), features, artifacts / "models" / V1 / "model.onnx", on_progress=on_progress
    )


@pytest.mark.server
@pytest.mark.parametrize("engine", ["python", "native"])
def test_a_server_over_its_memory_limit_stops_the_load_and_stays_up(own_server, artifacts, validation_rows, engine):
    """The limit, set for this test just under what axon itself reads of the server, trips the guard.

    The run (a 60 s window) stops at the guard's first reading, is marked incomplete with the
    reason, records the peak above the limit, and the server, never pushed further, still serves.
    """
    held = own_server.memory_bytes()
    assert held and held > 10 * 2**20, held  # tritonserver + a stub: tens of MB (PSS: shared pages split)
    limit = held - 4 * 2**20
    record = _run(own_server, artifacts, validation_rows[0], limit=limit, engine=engine)
    assert record["engine"]["name"] == engine
    assert record["complete"] is False and record["passed"] is False
    assert record["incomplete_reason"].startswith("server memory "), record["incomplete_reason"]
    assert "passed the limit" in record["incomplete_reason"] and "interrupted" not in record["incomplete_reason"]
    memory = record["server_memory"]
    assert memory["watched"] and memory["stopped_by_limit"] and memory["limit_bytes"] == limit and memory["peak_bytes"] > limit
    assert record["measured_s"] < LONG["duration_s"]
    assert own_server.death() is None
    wait_ready(own_server.endpoints.grpc, [V1], 10.0)  # the machine, and the server, are fine


@pytest.mark.server
def test_a_guarded_run_under_the_limit_records_the_servers_memory(own_server, artifacts, validation_rows):
    spec = LoadSpec(V1, concurrency=4, duration_s=1.0, warmup_s=0.3, timeout_s=5.0, engine="python")
    record = run_case(spec, Target.of(own_server, "on"), validation_rows[0], artifacts / "models" / V1 / "model.onnx")
    memory = record["server_memory"]
    assert record["complete"], record["incomplete_reason"]
    assert memory["watched"] and memory["samples"] >= 2 and not memory["stopped_by_limit"]
    assert memory["start_bytes"] <= memory["peak_bytes"] and memory["end_bytes"] <= memory["peak_bytes"]
    assert memory["limit_bytes"] > memory["peak_bytes"]  # the default: half of this machine's memory
    # A server given by URL: axon can't see its memory, and says so.
    external = run_case(spec, Target(own_server.endpoints, "external", own_server.version, "on"), validation_rows[0])
    assert external["server_memory"]["watched"] is False and "--url" in external["server_memory"]["reason"]


@pytest.mark.server
def test_a_run_names_the_death_of_the_server_axon_started(own_server, artifacts, validation_rows):
    """kill -9 of Triton while axon's own progress shows the window under way: the record says how it died."""
    killed = threading.Event()

    def on_progress(elapsed_s: float, sent: int, p99_ms: float) -> None:
        if elapsed_s > 0 and sent > 0 and not killed.is_set():
            killed.set()
            os.kill(own_server.pid, signal.SIGKILL)  # tritonserver only: its stubs are orphaned, as by the OOM killer

    record = _run(own_server, artifacts, validation_rows[0], on_progress=on_progress)
    assert killed.is_set()
    assert record["complete"] is False
    assert record["incomplete_reason"].startswith("server died: the Triton axon started was killed by SIGKILL"), record[
        "incomplete_reason"
    ]
    assert record["requests"]["ok"] > 0 and record["measured_s"] < LONG["duration_s"]
    # The next case says the same at once, not "model not ready" after a timeout.
    with pytest.raises(ServerError, match="the embedded Triton axon started is gone: killed by SIGKILL"):
        _run(own_server, artifacts, validation_rows[0])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(own_server.pid, signal.SIGKILL)


def test_the_queue_policy_is_written_and_parsed_back(tmp_path, artifacts):
    from axon.offline import repository
    from axon.study.tune.control import seed_options

    config = repository.model_config(V1, "embedded", "on", repository.ServingOptions(max_queue_size=64, queue_timeout_us=5000))
    policy = repository.parse_config(repository.text_format.MessageToString(config)).dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds, policy.timeout_action) == (
        64,
        5000,
        repository.mc.ModelQueuePolicy.REJECT,
    )
    # The seed's config has none: overload there is queued, as it always was.
    assert not repository.model_config(V1, "embedded", "on").dynamic_batching.HasField("default_queue_policy")
    copied = repository.with_queue_policy(embedded_repository(artifacts, "on"), tmp_path / "r", 8, 0)
    assert "max_queue_size: 8" in (copied / V1 / "config.pbtxt").read_text()
    from google.protobuf import json_format

    as_served = json_format.MessageToDict(config, preserving_proto_field_name=True)  # what Triton's get_model_config gives tune
    assert seed_options(as_served)[0].max_queue_size == 64


@pytest.mark.server
def test_rejections_by_the_queue_policy_are_shed_load_not_a_dead_server(artifacts, validation_rows, tmp_path):
    """A queue timeout of 1 µs against a batcher that holds requests up to 100 µs: Triton rejects
    (UNAVAILABLE, "Request timeout expired"), and the run counts REJECTED and runs to its end."""
    from axon.offline.repository import with_queue_policy

    repo = with_queue_policy(embedded_repository(artifacts, "on"), tmp_path / "repo", 0, 1)
    with EmbeddedServer(repo, models=[V1]) as server:
        spec = LoadSpec(V1, concurrency=8, duration_s=1.0, warmup_s=0.3, timeout_s=5.0, engine="python", max_error_rate=1.0)
        record = run_case(spec, Target.of(server, "on"), validation_rows[0])
        # The native engine checks its one body before the run: a server that sheds even a lone
        # request leaves nothing to check, and it says so (not "the server rejected the body").
        if shutil.which("h2load"):
            with pytest.raises(ServerError, match=r"queue policy rejected all \d+ check requests \(Request timeout expired\)"):
                run_case(
                    LoadSpec(V1, concurrency=8, duration_s=1.0, warmup_s=0.3, timeout_s=5.0, engine="native"),
                    Target.of(server, "on"),
                    validation_rows[0],
                )
    assert record["complete"], record["incomplete_reason"]
    assert record["requests"]["rejected"] > 0 and record["requests"]["failures"].get("REJECTED") == record["requests"]["rejected"]
    assert "UNAVAILABLE" not in record["requests"]["failures"]
    assert "timeout" in record["requests"]["failure_details"]["REJECTED"].lower()
    # Percentiles count answered requests only; the rejected ones' latency is kept apart.
    apart = record["latency_apart"]
    assert apart["of"] == "rejected" and apart["requests"] == record["requests"]["rejected"] == apart["latency_ms"]["count"]
    assert record["latency_ms"]["count"] == record["requests"]["ok"]


@pytest.mark.server
def test_the_native_engine_never_passes_a_run_the_queue_policy_shed(artifacts, validation_rows, tmp_path):
    """h2load sees HTTP 200 for a rejected request, and Triton 2.51 does not count a full queue's
    rejections. A queue bound of 1 under 8 closed-loop streams sheds most of them: the run must
    come out unverified, not passed, and say why and what to use instead."""
    from axon.offline.repository import with_queue_policy

    if shutil.which("h2load") is None:
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")
    repo = with_queue_policy(embedded_repository(artifacts, "on"), tmp_path / "repo", 1, 0)
    with EmbeddedServer(repo, models=[V1]) as server:
        spec = LoadSpec(V1, concurrency=8, duration_s=2.0, warmup_s=0.3, timeout_s=5.0, engine="native", max_error_rate=1.0)
        record = run_case(spec, Target.of(server, "on"), validation_rows[0])
    assert record["engine"]["name"] == "native" and record["passed"] is False
    assert any("--engine python to count rejections" in verdict for verdict in record["verdicts"]), record["verdicts"]
