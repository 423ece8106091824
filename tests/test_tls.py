"""gRPC over TLS: the embedded Triton serving with a self-signed certificate, and every client of axon talking to it.

Decisions checked here: ``--engine auto`` runs TLS on the python engine, which verifies the
server's certificate; ``--engine native`` runs h2load over https, which encrypts without
verifying, and its record says ``certificate_verified: false``. A CA that did not sign the
server's certificate fails at once with a plain message, never a hang.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from axon import engines
from axon.errors import ServerError
from axon.serving.backends import ExternalServer, embedded_repository
from axon.serving.embedded import EmbeddedServer, TlsFiles
from tests.faultlog import observe
from tests.helpers import assert_clean_error, run_axon

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.server
V1 = "particle_classifier_v1"
HANDSHAKE_LIMIT_S = 30  # a wrong CA must be reported well within this (it is reported at once)


def _certificate(folder, name: str = "server", cn: str = "localhost"):
    """A self-signed certificate for localhost and 127.0.0.1 (it is its own CA), and its key."""
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = _certificate(folder)
    other, _ = _certificate(folder, "other", cn="someone-else")
    return {"cert": cert, "key": key, "wrong_ca": other}


@pytest.fixture(scope="module")
def tls_server(artifacts, certs):
    with EmbeddedServer(embedded_repository(artifacts, "on"), models=[V1], tls=TlsFiles(certs["cert"], certs["key"])) as server:
        yield server


def test_embedded_server_serves_tls(tls_server, certs):
    ep = tls_server.endpoints
    assert ep.tls and ep.ca_file == str(certs["cert"])
    # The readiness check already verified the certificate; an external view of it does too.
    with ExternalServer(ep.grpc, models=[V1], tls=True, ca_file=certs["cert"]) as ext:
        assert ext.version == tls_server.version


@pytest.mark.parametrize("engine", ["auto", "native"])
def test_bench_over_tls(tls_server, artifacts, certs, tmp_path, engine):
    if engine == "native" and shutil.which("h2load") is None:
        pytest.skip("h2load not installed")
    out = tmp_path / "tls.json"
    ep = tls_server.endpoints
    done = run_axon("bench", "--url", ep.grpc, "--metrics-url", ep.metrics, "--tls", "--ca-file", str(certs["cert"]), "--engine", engine,
                    "--artifacts", str(artifacts), "--concurrency", "4", "--duration", "1", "--warmup", "0.3", "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["passed"] and run["server"]["tls"] and run["server"]["ca_file"] == str(certs["cert"])
    if engine == "auto":
        # auto runs TLS on the python engine (it verifies the certificate) and says why.
        assert run["engine"]["name"] == "python" and "TLS runs on the python engine" in run["engine"]["notice"]
        assert run["correctness"]["mismatches"] == 0 and run["correctness"]["checked"] > 0
    else:
        assert run["engine"]["name"] == "native" and run["engine"]["certificate_verified"] is False
        assert run["engine"]["notice"] == engines.H2LOAD_TLS_UNVERIFIED and "does not verify" in done.stderr
        assert run["verification"]["verified"]
    expected = {
        "auto": "runs on the python engine (notice says why), certificate verified against --ca-file; passes; exit 0",
        "native": "h2load over https: passes and is verified against Triton's counters; engine.certificate_verified false and the notice says h2load does not verify; exit 0",
    }[engine]
    observe(
        f"tls-bench-{engine}",
        f"axon bench --tls --ca-file against the embedded server over TLS (--engine {engine})",
        expected,
        run,
        done.returncode,
    )


def test_wrong_ca_is_a_clear_error_not_a_hang(tls_server, artifacts, certs, tmp_path):
    started = time.monotonic()
    done = run_axon(
        "bench",
        "--url",
        tls_server.endpoints.grpc,
        "--tls",
        "--ca-file",
        str(certs["wrong_ca"]),
        "--artifacts",
        str(artifacts),
        "--duration",
        "1",
        "--output",
        str(tmp_path / "r.json"),
    )
    elapsed = time.monotonic() - started
    assert_clean_error(
        done, "TLS handshake failed", f"not trusted by the CA file {certs['wrong_ca']}", "CERTIFICATE_VERIFY_FAILED"
    )
    assert elapsed < HANDSHAKE_LIMIT_S, elapsed
    assert not (tmp_path / "r.json").exists()
    observe("tls-wrong-ca", "a CA that did not sign the server's certificate", "exit 2 at once: 'TLS handshake failed: the server's certificate is not trusted by the CA file ...'",
            exit_code=done.returncode, message=done.stderr.strip(), seconds=round(elapsed, 1))  # fmt: skip


def test_plaintext_client_and_missing_ca_say_what_to_do(tls_server, artifacts, tmp_path):
    url = tls_server.endpoints.grpc
    # Without --tls: the TLS server closes the socket; the message says it may expect TLS.
    assert_clean_error(
        run_axon("bench", "--url", url, "--artifacts", str(artifacts), "--duration", "1", "--output", str(tmp_path / "a.json")),
        "the server may expect TLS (--tls)",
    )
    # --tls without --ca-file: the system's CAs do not know a self-signed certificate.
    assert_clean_error(
        run_axon(
            "bench", "--url", url, "--tls", "--artifacts", str(artifacts), "--duration", "1", "--output", str(tmp_path / "b.json")
        ),
        "give the server's CA with --ca-file",
    )


def test_bad_tls_input(tmp_path, certs):
    assert_clean_error(
        run_axon("bench", "--ca-file", str(certs["cert"]), "--url", "127.0.0.1:9", "--artifacts", str(tmp_path)),
        "give --tls with it",
    )
    assert_clean_error(
        run_axon("bench", "--tls", "--artifacts", str(tmp_path)), "--tls and --ca-file talk to a server given by --url"
    )
    assert_clean_error(
        run_axon("bench", "--url", "127.0.0.1:9", "--tls", "--ca-file", str(tmp_path / "nope.pem")), "cannot read the CA file"
    )
    assert_clean_error(
        run_axon("serve", "--tls-cert", str(certs["cert"]), "--artifacts", str(tmp_path)), "needs both --tls-cert and --tls-key"
    )
    assert_clean_error(
        run_axon("serve", "--tls-cert", str(tmp_path / "x.pem"), "--tls-key", str(certs["key"]), "--models", "v1"),
        "TLS certificate file not found",
    )
    with pytest.raises(ServerError, match="give --tls with it"):
        ExternalServer("127.0.0.1:9", ca_file=certs["cert"])


def test_serve_with_tls_checks_itself(artifacts, certs):
    done = run_axon(
        "serve",
        "--artifacts",
        str(artifacts),
        "--models",
        "v1",
        "--tls-cert",
        str(certs["cert"]),
        "--tls-key",
        str(certs["key"]),
        "--check",
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert f"--tls --ca-file {certs['cert']}" in done.stdout  # how a client talks to it
    assert "check particle_classifier_v1: p(signal) = " in done.stdout and "local onnxruntime agrees" in done.stdout


CASE = """
def test_case(axon_bench):
    record = axon_bench("v1", "on", concurrency=2)
    assert record["server"]["tls"] and record["engine"]["name"] == "python"
"""


@pytest.fixture
def pytester(pytester, monkeypatch):
    from pathlib import Path

    # The child pytest runs in a temporary folder; this checkout's plugin must be the one loaded.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    return pytester


def test_pytest_plugin_external_tls(pytester, tls_server, artifacts, certs):
    pytester.makepyfile(CASE)
    pytester.makefile(".toml", slo="[[slo]]\nmax_error_rate = 0.0\n")
    ep = tls_server.endpoints
    common = ["--triton=external", "--triton-url", ep.grpc, "--triton-metrics-url", ep.metrics, "--axon-artifacts", str(artifacts),
              "--axon-duration", "1", "--axon-warmup", "0.2", "--axon-slo-file", "slo.toml", "-p", "no:cacheprovider"]  # fmt: skip
    result = pytester.runpytest_subprocess(*common, "--triton-tls", "--triton-ca-file", str(certs["cert"]))
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    wrong = pytester.runpytest_subprocess(*common, "--triton-tls", "--triton-ca-file", str(certs["wrong_ca"]))
    assert wrong.ret == pytest.ExitCode.TESTS_FAILED
    wrong.stdout.fnmatch_lines(["*TLS handshake failed*"])
    usage = pytester.runpytest_subprocess("--triton-ca-file", str(certs["cert"]), "-p", "no:cacheprovider")
    assert (
        usage.ret == pytest.ExitCode.USAGE_ERROR
        and "--triton-tls and --triton-ca-file go with --triton=external" in usage.stderr.str()
    )
