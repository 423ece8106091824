"""The external backend, and the factory over all three (the docker backend is in docker.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from axon.errors import ServerError
from axon.serving.docker import COMPOSE_FILE, DOCKER_READY_TIMEOUT_S, DockerServer, docker_unavailable_reason
from axon.serving.embedded import READY_TIMEOUT_S, EmbeddedServer, TlsFiles
from axon.serving.endpoints import ContextServer, Endpoints, wait_ready

BACKENDS = ("embedded", "docker", "external")
EXTERNAL_READY_TIMEOUT_S = 10.0
# An HTTP/2 or HTTP/1 server answers the probe within a round trip; a silent one is left to wait_ready.
HTTP1_PROBE_TIMEOUT_S = 1.0
__all__ = [
    "BACKENDS",
    "COMPOSE_FILE",
    "DOCKER_READY_TIMEOUT_S",
    "DockerServer",
    "ExternalServer",
    "check_url",
    "docker_unavailable_reason",
    "embedded_repository",
    "make_server",
]


class ExternalServer(ContextServer):
    """An existing Triton deployment; axon only checks that it answers, never starts or stops it."""

    backend = "external"

    def __init__(
        self,
        url: str,
        models: Sequence[str] = (),
        metrics_url: str | None = None,
        tls: bool = False,
        headers: dict[str, str] | None = None,
        ready_timeout_s: float = EXTERNAL_READY_TIMEOUT_S,
        ca_file: str | Path | None = None,
    ):
        self.url = url.removeprefix("grpc://").removeprefix("grpcs://")
        self.tls = tls or url.startswith("grpcs://")
        self.ca_file = str(ca_file) if ca_file is not None else None
        if self.ca_file and not self.tls:
            raise ServerError("a CA file verifies a TLS server: give --tls with it")
        self.models = list(models)
        self.metrics_url = metrics_url
        self.headers = dict(headers or {})
        self.ready_timeout_s = ready_timeout_s
        self.version: str | None = None

    def start(self) -> Endpoints:
        check_url(self.url, "the server URL")
        http1 = http1_answer(self.url)
        if http1 is not None:  # said at once: gRPC would only time out, then guess at TLS
            raise ServerError(
                f"{self.url} is an HTTP/1 server (it answered {http1!r}), not Triton's gRPC endpoint; "
                "give the gRPC port (usually 8001; 8000 is Triton's HTTP API, 8002 its metrics)"
            )
        try:
            self.version = wait_ready(
                self.url, self.models, self.ready_timeout_s, ssl=self.tls, headers=self.headers, ca_file=self.ca_file
            )
        except ServerError as exc:
            raise ServerError(f"Triton at {self.url} is unreachable or not ready: {exc}") from None
        if self.metrics_url:  # a wrong metrics URL is said before any load, not as a run's missing counters
            from axon.serving import triton_metrics

            triton_metrics.check_endpoint(self.metrics_url, "the metrics URL")
        self._endpoints = Endpoints(
            grpc=self.url, metrics=self.metrics_url, tls=self.tls, headers=self.headers, ca_file=self.ca_file
        )
        return self._endpoints

    def stop(self) -> None:
        self._endpoints = None


def check_url(url: str, option: str) -> None:
    """A gRPC address is HOST:PORT; ``option`` is what the user typed it as (``--url``, ``--triton-url``).

    Said at once, before any connection: an http:// URL would otherwise wait out the readiness
    timeout and end in gRPC's "Misformatted domain name", and a port above 65535 would be
    wrapped by gRPC into another port.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme in ("http", "https"):
        raise ServerError(
            f"{option} is Triton's gRPC endpoint, HOST:PORT without http:// (usually port 8001; 8000 is HTTP), got {url!r}"
        )
    if scheme not in (None, "grpc", "grpcs"):
        raise ServerError(f"{option} must be HOST:PORT of Triton's gRPC endpoint, got {url!r}")
    host, sep, port = url.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ServerError(f"{option} must be HOST:PORT of Triton's gRPC endpoint, got {url!r}")
    if not 1 <= int(port) <= 65535:
        raise ServerError(f"{option}: port {port} is out of range (1-65535), got {url!r}")


def http1_answer(url: str, timeout_s: float = HTTP1_PROBE_TIMEOUT_S) -> str | None:
    """The status line an HTTP/1-only server at ``url`` (HOST:PORT) answers with, or None for
    anything else (an HTTP/2 or gRPC server, a TLS one, no answer, no server).

    First the HTTP/2 preface: a gRPC server (or a proxy that speaks both, such as Envoy)
    answers with a binary SETTINGS frame, a TLS server with an alert; either means "not HTTP/1".
    Triton's HTTP and metrics ports close the connection on it instead (other HTTP/1 servers
    answer in text): only then is a plain HTTP/1.1 request sent, and "HTTP/1.1 200 OK" says
    what the port is. Two round trips at most.
    """
    import socket

    host, _, port = url.split("://", 1)[-1].rpartition(":")

    def answer(request: bytes) -> bytes | None:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as sock:
                sock.settimeout(timeout_s)
                sock.sendall(request)
                return sock.recv(64)
        except (OSError, ValueError):
            return None  # unreachable or silent: wait_ready says what it finds

    head = answer(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    if head is None or (head and head[0] < 0x09):
        return None  # silent, or a binary answer: an HTTP/2 frame (SETTINGS) or a TLS alert
    # Closed on the preface, or answered in text: ask in HTTP/1, whose answer names itself.
    head = answer(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    if not head or not head.startswith(b"HTTP/1"):
        return None
    return head.split(b"\r\n", 1)[0].decode("ascii", "replace")


def check_metrics_url(url: str, option: str) -> None:
    """Triton's metrics endpoint is an http(s) URL, e.g. http://HOST:8002/metrics; said before any load."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"{option} must be Triton's metrics URL, e.g. http://HOST:8002/metrics, got {url!r}")
    if port is not None and port == 0:
        raise ServerError(f"{option}: port 0 is out of range (1-65535), got {url!r}")


def embedded_repository(artifacts: Path, batching: str) -> Path:
    return artifacts / "repositories" / "embedded" / f"batching_{batching}"


def make_server(
    backend: str,
    batching: str = "on",
    models: Sequence[str] | None = None,
    artifacts: Path = Path("artifacts"),
    repository: Path | None = None,
    url: str | None = None,
    metrics_url: str | None = None,
    tls: bool = False,
    headers: dict[str, str] | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float | None = None,
    ca_file: str | Path | None = None,
    tls_files: TlsFiles | None = None,
):
    """One server of the given backend, not yet started.

    ``tls``/``ca_file`` make axon talk to an external server over TLS; ``tls_files`` start the
    embedded server with gRPC over TLS.
    """
    if tls_files is not None and backend != "embedded":
        raise ServerError(f"a TLS certificate and key serve the embedded backend; the {backend} backend was asked for")
    if backend == "embedded":
        return EmbeddedServer(
            repository or embedded_repository(artifacts, batching),
            models=models,
            log_path=log_path,
            ready_timeout_s=ready_timeout_s or READY_TIMEOUT_S,
            tls=tls_files,
        )
    if backend == "docker":
        # The CPU variant mounts the embedded repository under artifacts; log_path keeps the container's log.
        return DockerServer(
            batching,
            models=models,
            artifacts=artifacts,
            log_path=log_path,
            **({"ready_timeout_s": ready_timeout_s} if ready_timeout_s else {}),
        )
    if backend == "external":
        if not url:
            raise ServerError("the external backend needs a URL (HOST:PORT of Triton's gRPC endpoint)")
        return ExternalServer(url, models or (), metrics_url=metrics_url, tls=tls, headers=headers, ca_file=ca_file)
    raise ServerError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
