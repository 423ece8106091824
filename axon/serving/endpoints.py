"""Triton servers behind one interface: embedded (default), docker (GPU container), external.

Every backend gives :class:`Endpoints` once ready and is a context manager (:class:`ContextServer`),
so a fixture or the CLI writes ``with server: ...`` and never leaks a process. Only the embedded
backend owns a process; docker owns a compose project; external owns nothing and is never started
or stopped. Here too: free loopback ports, and the readiness, liveness and TLS-failure checks the
backends and the engines ask of a server.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from axon.errors import ServerError

POLL_INTERVAL_S = 0.2
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Endpoints:
    """Where a running server answers. ``grpc`` is host:port; metrics is a full URL or None."""

    grpc: str
    http: str | None = None
    metrics: str | None = None
    tls: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    ca_file: str | None = None  # with tls: the CA that signed the server's certificate (None: the system's CAs)
    # What else the record's server block says of who serves (the docker backend: image, image_id).
    server_info: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "grpc": self.grpc,
            "http": self.http,
            "metrics": self.metrics,
            "tls": self.tls,
            "ca_file": self.ca_file,
            **self.server_info,
        }


class Server(Protocol):
    backend: str

    def start(self) -> Endpoints: ...

    def stop(self) -> None: ...

    @property
    def endpoints(self) -> Endpoints: ...


class ContextServer:
    """start() on enter, stop() on exit, whatever happened inside."""

    backend = "?"
    _endpoints: Endpoints | None = None

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            raise ServerError(f"{self.backend} server is not started")
        return self._endpoints

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def death(self) -> str | None:
        """Why the server axon started is gone (exit status or signal), or None while it lives.

        Servers axon does not own (external) never die as far as axon can tell.
        """
        return None

    def memory_bytes(self) -> int | None:
        """The memory the server holds now (bytes), or None where axon cannot see it (external)."""
        return None


# --------------------------------------------------------------------------- ports


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# --------------------------------------------------------------------------- readiness

# What gRPC says when a TLS handshake fails (a certificate the client's CA did not sign, say).
TLS_FAILURE_MARKS = ("handshake failed", "CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER")


def read_ca(ca_file: str | Path | None) -> bytes | None:
    """The PEM bytes of a CA file (None: gRPC uses the system's CAs); a clear error if unreadable."""
    if ca_file is None:
        return None
    try:
        data = Path(ca_file).read_bytes()
    except OSError as exc:
        raise ServerError(f"cannot read the CA file {ca_file}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ServerError(f"the CA file {ca_file} holds no PEM certificate")
    return data


def tls_problem(message: str, ca_file: str | None) -> str | None:
    """A plain explanation when ``message`` (a gRPC error) is a failed TLS handshake, else None."""
    if not any(mark.lower() in message.lower() for mark in TLS_FAILURE_MARKS):
        return None
    if "WRONG_VERSION_NUMBER" in message:
        # The answer to the client's hello was not TLS at all: a plaintext server, not a bad certificate.
        return "the server does not speak TLS (it answered the TLS handshake in plaintext): drop --tls, or start it with TLS (axon serve --tls-cert/--tls-key)"
    trusted = f"the CA file {ca_file}" if ca_file else "the system's CAs (give the server's CA with --ca-file)"
    return f"TLS handshake failed: the server's certificate is not trusted by {trusted} ({message})"


def wait_ready(
    grpc_url: str,
    models: Sequence[str],
    timeout_s: float,
    alive=lambda: None,
    ssl: bool = False,
    headers: dict[str, str] | None = None,
    ca_file: str | None = None,
) -> str:
    """Poll until the server and every model are ready; return the server version.

    ``alive`` is called each poll and may raise (a child process that exited, say), so a
    server that dies while starting is reported at once rather than at the timeout. A failed
    TLS handshake (a certificate the CA does not vouch for) is reported at once too: waiting
    does not fix it.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    if ssl:
        read_ca(ca_file)  # a missing or broken CA file is said now, not as a handshake failure
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    with grpcclient.InferenceServerClient(
        grpc_url, ssl=ssl, root_certificates=str(ca_file) if ssl and ca_file else None
    ) as client:
        while True:
            alive()
            try:
                if client.is_server_ready(headers=headers, client_timeout=2.0):
                    not_ready = [m for m in models if not client.is_model_ready(m, headers=headers, client_timeout=2.0)]
                    if not not_ready:
                        return client.get_server_metadata(headers=headers, client_timeout=2.0).version
                    last_error = f"models not ready: {', '.join(not_ready)}"
                else:
                    last_error = "server not ready"
            except InferenceServerException as exc:
                last_error = str(exc).splitlines()[0]
                problem = tls_problem(last_error, ca_file) if ssl else None
                if problem:
                    raise ServerError(problem) from None
                if not ssl and "Socket closed" in last_error:
                    last_error += "; the server may expect TLS (--tls)"
            if time.monotonic() >= deadline:
                raise ServerError(f"Triton at {grpc_url} not ready after {timeout_s:.0f} s ({last_error})")
            time.sleep(POLL_INTERVAL_S)


def grpc_alive(endpoints: Endpoints, timeout_s: float = 2.0) -> bool:
    """Whether Triton's gRPC endpoint answers a liveness call (a metrics endpoint can fail alone)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        with grpcclient.InferenceServerClient(
            endpoints.grpc, ssl=endpoints.tls, root_certificates=endpoints.ca_file if endpoints.tls else None
        ) as client:
            return bool(client.is_server_live(headers=endpoints.headers or None, client_timeout=timeout_s))
    except InferenceServerException:
        return False
