"""The real embedded Triton: correctness over gRPC, bad requests, failed starts, clean stops."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from axon.errors import ServerError
from axon.offline import export
from axon.serving.backends import DockerServer, ExternalServer, docker_unavailable_reason, embedded_repository
from axon.serving.client import infer
from axon.serving.embedded import EmbeddedServer
from tests.absent import DOCKER, take_away

MODELS = ("particle_classifier_v1", "particle_classifier_v2")
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def servers(artifacts):
    """One embedded server per batching mode, for the whole module."""
    with EmbeddedServer(embedded_repository(artifacts, "on")) as on, EmbeddedServer(embedded_repository(artifacts, "off")) as off:
        yield {"on": on, "off": off}


def _reference(artifacts, model, rows):
    (out,) = export.session(artifacts / "models" / model / "model.onnx").run(["output"], {"input": rows})
    return out


def _descendants(pid):
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


@pytest.mark.parametrize("batching", ["on", "off"])
@pytest.mark.parametrize("model", MODELS)
def test_probabilities_over_grpc_equal_local_onnxruntime(servers, artifacts, validation_rows, model, batching):
    features, _ = validation_rows
    sizes = (1, 7, 64) if batching == "on" else (1,)
    for start, size in enumerate(sizes):
        rows = features[start * 64 : start * 64 + size]
        got = infer(servers[batching].endpoints.grpc, model, rows)
        assert got.shape == (size, 1)
        np.testing.assert_allclose(got, _reference(artifacts, model, rows), rtol=0, atol=1e-6)


def test_concurrent_requests_are_never_mixed_up(servers, artifacts, validation_rows):
    """64 in flight with batching on: every response matches its own rows, and Triton did batch."""
    features, _ = validation_rows
    model = "particle_classifier_v1"
    n_requests = 512
    expected = _reference(artifacts, model, features[:n_requests])
    grpc_url = servers["on"].endpoints.grpc

    async def run():
        async with grpcaio.InferenceServerClient(grpc_url) as client:
            gate = asyncio.Semaphore(64)

            async def one(i):
                rows = features[i : i + 1]
                tensor = grpcaio.InferInput("input", [1, 28], "FP32")
                tensor.set_data_from_numpy(rows)
                async with gate:
                    result = await client.infer(model, [tensor], client_timeout=30)
                return i, result.as_numpy("output")

            return await asyncio.gather(*(one(i) for i in range(n_requests)))

    stats_before = grpcclient.InferenceServerClient(grpc_url).get_inference_statistics(model).model_stats[0]
    for i, out in asyncio.run(run()):
        np.testing.assert_allclose(out[0], expected[i], atol=1e-6, err_msg=f"request {i} got another request's answer")
    stats = grpcclient.InferenceServerClient(grpc_url).get_inference_statistics(model).model_stats[0]
    inferences = stats.inference_count - stats_before.inference_count
    executions = stats.execution_count - stats_before.execution_count
    assert inferences == n_requests
    assert executions < inferences, "dynamic batching merged no requests under 64 in flight"


@pytest.mark.parametrize(
    ("name", "dtype", "shape", "model", "message"),
    [
        ("wrong_input", "FP32", [1, 28], "particle_classifier_v1", "wrong_input"),
        ("input", "FP64", [1, 28], "particle_classifier_v1", "FP64"),
        ("input", "FP32", [1, 27], "particle_classifier_v1", "[1,27]"),
        ("input", "FP32", [257, 28], "particle_classifier_v1", "batch-size must be <= 256"),
        ("input", "FP32", [1, 28], "particle_classifier_v9", "particle_classifier_v9"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_stays_up(servers, validation_rows, name, dtype, shape, model, message):
    grpc_url = servers["on"].endpoints.grpc
    client = grpcclient.InferenceServerClient(grpc_url)
    tensor = grpcclient.InferInput(name, shape, dtype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype=np.float64 if dtype == "FP64" else np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer(model, [tensor], client_timeout=10)
    assert message in err.value.message()
    assert infer(grpc_url, "particle_classifier_v1", validation_rows[0][:1]).shape == (1, 1)


def test_batching_off_rejects_a_batch_of_two(servers, validation_rows):
    with pytest.raises(ServerError, match="batch-size must be <= 1"):
        infer(servers["off"].endpoints.grpc, "particle_classifier_v1", validation_rows[0][:2])


def test_binds_loopback_only(servers):
    pid = servers["on"].pid
    addresses = {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    # gRPC listens on an IPv6 socket too; '::ffff:127.0.0.1' is IPv4 loopback mapped into it.
    assert addresses and addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, addresses


def test_stop_leaves_no_process_behind(artifacts):
    server = EmbeddedServer(embedded_repository(artifacts, "on"), models=["particle_classifier_v1"])
    with server:
        procs = [psutil.Process(p) for p in (server.pid, *_descendants(server.pid))]
        assert len(procs) >= 2  # tritonserver and at least one python-backend stub
        assert 0 < server.startup_s <= server.ready_timeout_s  # measured, and within the limit start() enforces
    # stop() waits for the group; the stubs' exit is still polled (up to 15 s), not assumed after a fixed nap.
    _gone, alive = psutil.wait_procs(procs, timeout=15)
    assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def _assert_fails_fast_and_clean(server, *fragments):
    started = time.monotonic()
    with pytest.raises(ServerError) as err:
        server.start()
    assert time.monotonic() - started < server.ready_timeout_s + 10
    for fragment in fragments:
        assert fragment in str(err.value)
    assert server.process is None


def test_port_in_use(artifacts):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _assert_fails_fast_and_clean(
            EmbeddedServer(embedded_repository(artifacts, "on"), grpc_port=port), f"grpc port {port}", "already in use"
        )


def _copy_repo(artifacts, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(embedded_repository(artifacts, "on"), repo)
    return repo


def test_broken_config_quotes_the_server_log(artifacts, tmp_path):
    repo = _copy_repo(artifacts, tmp_path)
    (repo / "particle_classifier_v1" / "config.pbtxt").write_text("name: 'particle_classifier_v1'\nmax_batch_size: banana\n")
    server = EmbeddedServer(repo, ready_timeout_s=40)
    _assert_fails_fast_and_clean(server, "failed to start", "banana")


def test_missing_model_file_quotes_the_server_log(artifacts, tmp_path):
    repo = _copy_repo(artifacts, tmp_path)
    (repo / "particle_classifier_v2" / "1" / "model.onnx").unlink()
    server = EmbeddedServer(repo, ready_timeout_s=40)
    _assert_fails_fast_and_clean(server, "failed to start", "model file not found")


def test_missing_repository(tmp_path):
    with pytest.raises(ServerError, match="model repository not found"):
        EmbeddedServer(tmp_path / "nowhere").start()


def test_external_server_is_checked_not_started(servers):
    ext = ExternalServer(servers["on"].endpoints.grpc, models=list(MODELS))
    with ext:
        assert ext.version == servers["on"].version
    with pytest.raises(ServerError, match="unreachable"):
        ExternalServer("127.0.0.1:9", ready_timeout_s=1).start()


def test_docker_backend_explains_what_is_missing(monkeypatch, tmp_path):
    take_away(monkeypatch, tmp_path / "bin", *DOCKER)  # a machine without a container engine, even where CI has one
    reason = docker_unavailable_reason()
    assert (
        reason
        == "the docker backend needs a container engine: the docker command is not installed (Debian: apt-get install docker.io)"
    )
    with pytest.raises(ServerError) as err:
        DockerServer("on").start()
    assert str(err.value) == reason and "docker" in reason.lower()
