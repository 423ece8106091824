"""The docker backend against a real container engine: compose up, readiness, the repository
mount, ports, logs, teardown on failure, on a killed container and on Ctrl-C.

Where no engine (or no image, unbuildable here) is available these tests skip with the one-line
reason; where `make test` set the engine up (AXON_REQUIRE_DOCKER=1), that is a failure instead.
Each test runs under a compose project name of its own and counts only its own containers.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from axon.serving import docker
from tests.helpers import LineWatcher, assert_clean_error, window_under_way

ROOT = Path(__file__).resolve().parents[1]
V1 = "particle_classifier_v1"

pytestmark = pytest.mark.server


@pytest.fixture(scope="module", autouse=True)
def engine():
    reason = docker.docker_unavailable_reason("cpu")
    if reason:
        if os.environ.get("AXON_REQUIRE_DOCKER"):
            pytest.fail(f"make test set up a container engine, yet: {reason}")
        pytest.skip(reason)
    if docker.image_id(docker.cpu_image()) is None:
        # Built once per run (make test does it in set-up); the script skips an existing tag.
        subprocess.run(["bash", str(docker.BUILD_SCRIPT)], check=True, env=dict(os.environ, PY=sys.executable), timeout=600)


@pytest.fixture
def project(request):
    """A compose project base unique to this test; afterwards none of its containers may remain."""
    base = f"axon-test-{os.getpid()}-{secrets.token_hex(3)}"
    yield base
    left = _containers(base)
    if left:
        subprocess.run(["docker", "rm", "-f", "-v", *[c.split()[0] for c in left]], capture_output=True, timeout=60)
        pytest.fail(f"containers left behind by {request.node.name}: {left}")


def _containers(base: str) -> list[str]:
    """This test's containers, running or not: their project label starts with its base."""
    done = subprocess.run(
        ["docker", "ps", "-a", "--format", '{{.ID}} {{.Label "com.docker.compose.project"}}'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [line for line in done.stdout.splitlines() if line.split()[1:2] and line.split()[1].startswith(base)]


def _axon(args: list[str], project: str, cwd: Path, **env: str) -> subprocess.Popen:
    environ = dict(os.environ, AXON_DOCKER_PROJECT=project, **env)
    return subprocess.Popen(
        [sys.executable, "-m", "axon.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        cwd=cwd,
        env=environ,
    )


def test_compose_config_validates_both_variants(tmp_path):
    """Both variants of the one compose file validate; image, ports and repository come from the environment."""
    compose = docker.compose_command()
    outputs = {}
    for profile in ("", "cpu"):
        env = dict(
            os.environ,
            AXON_ARTIFACTS=str(tmp_path),
            AXON_GRPC_PORT="18001",
            AXON_CPU_IMAGE="axon/triton-cpu:test",
            COMPOSE_PROFILES=profile,
        )
        done = subprocess.run(
            [*compose, "-f", str(docker.COMPOSE_FILE), "config"], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        outputs[profile] = done.stdout
    gpu, cpu = outputs[""], outputs["cpu"]
    assert "driver: nvidia" in gpu and "127.0.0.1:18001:8001" in gpu  # the GPU service publishes on loopback only
    cpu_service = cpu[cpu.index("  triton-cpu:") :]
    assert (
        "network_mode: host" in cpu_service
        and "image: axon/triton-cpu:test" in cpu_service
        and "AXON_GRPC_PORT: '18001'" in cpu_service
    )
    assert f"{tmp_path}/repositories/embedded/batching_on:/models:ro" in cpu_service and "- cpu" in cpu_service


def test_no_engine_is_one_line_and_exit_2(artifacts, tmp_path):
    """Without a docker command: `axon bench --backend docker` and `pytest --triton=docker` say so, at once."""
    env = {"PATH": str(tmp_path)}  # no docker here; python is run by its absolute path
    bench = _axon(
        ["bench", "--backend", "docker", "--artifacts", str(artifacts), "--concurrency", "1"], "axon-test-none", tmp_path, **env
    )
    out, err = bench.communicate(timeout=60)
    assert_clean_error(subprocess.CompletedProcess(bench.args, bench.returncode, out, err), "docker command is not installed")
    assert [line for line in err.splitlines() if line.startswith("axon: error")] == [
        err.splitlines()[-1]
    ] and "starting" not in err, err
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "benchmarks"), "--triton=docker", "--axon-artifacts", str(artifacts)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, **env), timeout=120,
    )  # fmt: skip
    assert (
        done.returncode == 4 and "docker command is not installed" in done.stderr and "--triton-skip-unavailable" in done.stderr
    ), done.stderr


def test_benchmarks_through_docker_on_and_off_and_a_failing_case_tears_down_with_logs(artifacts, tmp_path, project):
    """`pytest benchmarks --triton=docker -k "v1 and c16"`: one container per batching mode, the
    record names backend docker and the image; a failing case (batching off, impossible budget)
    still brings every container down and keeps their logs beside the JSON."""
    slo = tmp_path / "slo.toml"
    slo.write_text('[[slo]]\nname = "impossible-off"\nbatching = "off"\np50_ms = 0.001\n')
    out = tmp_path / "out" / "bench.json"
    out.parent.mkdir()
    args = [
        "benchmarks",
        "--triton=docker",
        "-k",
        "v1 and c16 and closed",
        "--axon-artifacts",
        str(artifacts),
        "--axon-duration",
        "1.5",
        "--axon-warmup",
        "0.5",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "--axon-slo-file", str(slo), f"--benchmark-json={out}"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, AXON_DOCKER_PROJECT=project), timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 failed, 1 passed" in done.stdout and "impossible-off" in done.stdout, done.stdout[-3000:]
    assert "ran the cpu image axon/triton-cpu:" in done.stdout
    records = {b["name"]: b["extra_info"]["axon"] for b in json.loads(out.read_text())["benchmarks"]}
    assert set(records) == {"test_closed_loop[v1-batching-on-c16]", "test_closed_loop[v1-batching-off-c16]"}
    image_id = docker.image_id(docker.cpu_image())
    for name, record in records.items():
        server = record["server"]
        assert server["backend"] == "docker" and server["image"] == docker.cpu_image() and server["image_id"] == image_id, server
        assert server["docker_variant"] == "cpu" and server["version"] == "2.51.0" and server["grpc"].startswith("127.0.0.1:")
        assert record["batching"] in name and record["complete"] and record["requests"]["ok"] > 0
        assert record["correctness"]["enabled"] and record["correctness"]["mismatches"] == 0
    for batching in ("on", "off"):
        log = out.parent / f"triton-docker-{project}-batching-{batching}.log"
        assert "successfully loaded 'particle_classifier_v1'" in log.read_text(), log
    assert _containers(project) == []


def test_serve_answers_like_onnxruntime_and_ctrl_c_leaves_no_container(artifacts, validation_rows, tmp_path, project):
    from axon.offline import export
    from axon.serving import client

    proc = _axon(
        ["serve", "--backend", "docker", "--artifacts", str(artifacts), "--models", "v1", "--log-dir", str(tmp_path)],
        project,
        tmp_path,
    )
    try:
        stdout = LineWatcher(proc.stdout)
        stdout.wait_for(lambda line: "press Ctrl-C" in line, timeout_s=180)
        text = "".join(stdout.lines)
        assert re.search(r"docker Triton 2\.51\.0 \(batching on\) ready", text), text
        grpc = re.search(r"grpc\s+(127\.0\.0\.1:\d+)", text).group(1)
        assert len(_containers(project)) == 1
        rows = validation_rows[0][:16]
        got = client.infer(grpc, V1, rows)
        (want,) = export.session(artifacts / "models" / V1 / "model.onnx").run([export.OUTPUT_NAME], {export.INPUT_NAME: rows})
        assert np.max(np.abs(got - want)) <= 1e-6
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 130
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert _containers(project) == []
    assert "axon: interrupted" in proc.stderr.read()
    assert "successfully loaded" in (tmp_path / "tritonserver-batching-on.log").read_text()


def test_docker_kill_mid_run_gives_an_incomplete_record(artifacts, tmp_path, project):
    """`axon bench --backend docker`; the container is killed once axon reports requests measured
    in its window (its own progress line, not a sleep): the record is incomplete, the exit non-zero."""
    out = tmp_path / "killed.json"
    args = [
        "bench",
        "--backend",
        "docker",
        "--artifacts",
        str(artifacts),
        "--batching",
        "off",
        "--concurrency",
        "8",
        "--duration",
        "60",
        "--warmup",
        "0.5",
        "--timeout",
        "3",
        "--output",
        str(out),
    ]
    proc = _axon(args, project, tmp_path)
    try:
        stderr = LineWatcher(proc.stderr)
        stderr.wait_for(window_under_way, timeout_s=180)
        (container,) = [c.split()[0] for c in _containers(project)]
        subprocess.run(["docker", "kill", container], check=True, capture_output=True, timeout=30)
        started = time.monotonic()
        stdout = proc.stdout.read()
        proc.wait(timeout=90)
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert elapsed < 45, "a dead container must not hang the run"
    assert_clean_error(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr.rest()), "incomplete")
    (run,) = json.loads(out.read_text())["runs"]
    # The watch names the death (not only "server unavailable"), and saw the container's memory.
    assert run["complete"] is False and run["requests"]["ok"] > 0
    assert run["incomplete_reason"].startswith("server died: the Triton axon started was killed by SIGKILL in its container"), (
        run["incomplete_reason"]
    )
    assert run["server_memory"]["watched"] and run["server_memory"]["peak_bytes"] > 0
    assert (
        run["server"]["backend"] == "docker"
        and run["server"]["image"] == docker.cpu_image()
        and run["server"]["image_id"].startswith("sha256:")
    )
    assert list((tmp_path / "results").glob("triton-docker-*-batching-off.log")), "the killed container's log is kept"
    assert _containers(project) == []


def test_docker_kill_under_serve_is_said_at_once_and_leaves_no_container(artifacts, tmp_path, project):
    """`axon serve --backend docker`, then `docker kill`: the death named, a non-zero exit, nothing left."""
    proc = _axon(
        ["serve", "--backend", "docker", "--artifacts", str(artifacts), "--models", "v1", "--log-dir", str(tmp_path)],
        project,
        tmp_path,
    )
    try:
        LineWatcher(proc.stdout).wait_for(lambda line: "press Ctrl-C" in line, timeout_s=180)
        stderr = LineWatcher(proc.stderr)
        (container,) = [c.split()[0] for c in _containers(project)]
        subprocess.run(["docker", "kill", container], check=True, capture_output=True, timeout=30)
        killed = time.monotonic()
        stderr.wait_for(lambda line: "died: killed by SIGKILL in its container" in line, timeout_s=30)
        said_within_s = time.monotonic() - killed
        code = proc.wait(timeout=90)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert code == 2 and "Traceback" not in stderr.rest(), stderr.lines
    # Asked once a second (an inspect costs tens of ms), so said within about that.
    assert said_within_s < 5.0, said_within_s
    assert _containers(project) == []


def test_a_users_onnx_model_is_served_in_the_container_and_checked(tmp_path, project):
    from tests import onnx_models

    model = onnx_models.tagger(tmp_path / "tagger.onnx")
    out = tmp_path / "r.json"
    args = ["bench", "--backend", "docker", "--onnx", str(model), "--shape", "points:8,3", "--shape", "mask:8"]
    proc = _axon(
        [*args, "--concurrency", "2", "--duration", "1", "--warmup", "0.3", "--engine", "python", "--output", str(out)],
        project,
        tmp_path,
    )
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == 0, stderr
    record = json.loads(out.read_text())["runs"][0]
    assert record["server"]["backend"] == "docker" and record["model"] == "tagger" and record["passed"]
    assert record["correctness"]["checked"] > 0 and record["correctness"]["mismatches"] == 0
    assert _containers(project) == []
