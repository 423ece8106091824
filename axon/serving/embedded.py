"""The embedded Triton server: the real tritonserver from the nvidia-pytriton wheel, as a child process on loopback.

Like every backend it gives :class:`~axon.serving.endpoints.Endpoints` once ready and is a
context manager, so a fixture or the CLI writes ``with server: ...`` and never leaks a process.
Its processes are stopped through :mod:`axon.serving.process`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from axon.errors import ServerError
from axon.serving.endpoints import LOOPBACK, ContextServer, Endpoints, free_port, port_in_use, read_ca, wait_ready
from axon.serving.process import (
    DIE_WITH_PARENT,
    describe_exit,
    die_with_parent,
    group_members,
    oom_kills,
    shm_regions,
    stop_group,
)
from axon.serving.watch import group_memory_bytes

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 12
WORKDIR_PREFIX = "axon-triton-"
# A label every embedded server's work folder carries (hence the command lines of tritonserver
# and its stubs), taken from the environment so that servers started by child processes (an
# `axon serve` a test runs) carry it too. The test suite sets one per session and counts as its
# own leftovers only the processes with its label, never another checkout's servers.
SESSION_LABEL_ENV = "AXON_SESSION_LABEL"


def workdir_prefix() -> str:
    label = "".join(c for c in os.environ.get(SESSION_LABEL_ENV, "") if c.isalnum())
    return f"{WORKDIR_PREFIX}{label}-" if label else WORKDIR_PREFIX


@dataclass(frozen=True)
class EmbeddedInstall:
    """Where the nvidia-pytriton wheel keeps the tritonserver binary and its pieces."""

    root: Path  # site-packages/pytriton/tritonserver
    libs: Path  # site-packages/nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    def stub(self, version: str | None = None) -> Path:
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_embedded() -> EmbeddedInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the embedded Triton server needs the nvidia-pytriton package: pip install 'axon[server]'")
    package = Path(next(iter(spec.submodule_search_locations)))
    install = EmbeddedInstall(package / "tritonserver", package.parent / "nvidia_pytriton.libs")
    if not install.binary.is_file():
        raise ServerError(f"tritonserver binary missing from the nvidia-pytriton install: {install.binary}")
    return install


def prepare_backend_dir(install: EmbeddedInstall, into: Path) -> Path:
    """A backend directory with the python backend and the stub for *this* Python.

    The wheel ships stubs for several Pythons; the python backend looks for
    ``triton_python_backend_stub`` beside its .so, so the matching one is copied there.
    """
    stub = install.stub()
    if not stub.is_file():
        raise ServerError(
            f"no python-backend stub for Python {sys.version_info.major}.{sys.version_info.minor} in {stub.parent.parent}"
        )
    python_dir = into / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (install.root / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, python_dir / item.name)
    shutil.copy2(stub, python_dir / stub.name)
    return into


def server_environment(install: EmbeddedInstall) -> dict[str, str]:
    """The environment the tritonserver child needs (see FIELD-NOTES)."""
    env = dict(os.environ)
    # The stub links libcudart from the wheel's libs, and libpython from this interpreter.
    lib_dirs = [str(install.libs), sysconfig.get_config_var("LIBDIR") or ""]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([d for d in lib_dirs if d] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    # The stub's interpreter finds this environment's packages (onnxruntime) via PATH's python.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclass(frozen=True)
class TlsFiles:
    """gRPC over TLS for the embedded server: Triton's own ``--grpc-use-ssl`` options.

    ``ca`` goes to Triton as ``--grpc-root-cert`` and is the CA clients (axon's readiness
    check included) verify the server against; without it the certificate must vouch for
    itself (self-signed), so it is its own CA.
    """

    cert: Path
    key: Path
    ca: Path | None = None

    @property
    def client_ca(self) -> str:
        return str(self.ca or self.cert)

    def check(self) -> None:
        for name, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if path is not None and not Path(path).is_file():
                raise ServerError(f"TLS {name} file not found: {path}")
        read_ca(self.client_ca)

    def triton_args(self) -> list[str]:
        args = [
            "--grpc-use-ssl=true",
            f"--grpc-server-cert={Path(self.cert).resolve()}",
            f"--grpc-server-key={Path(self.key).resolve()}",
        ]
        return args + ([f"--grpc-root-cert={Path(self.ca).resolve()}"] if self.ca else [])


class EmbeddedServer(ContextServer):
    """The real tritonserver from the nvidia-pytriton wheel, as a child process, on loopback.

    Parameters
    ----------
    repository
        A model repository of the ``embedded`` target.
    models
        Models that must be READY before :meth:`start` returns (default: every folder).
    grpc_port, http_port, metrics_port
        Fixed ports; free ones are picked when None.
    log_path
        Where the server log goes (default: inside the work directory).
    tls
        Serve gRPC over TLS (:class:`TlsFiles`); the endpoints then say ``tls`` and the CA
        clients verify against. Triton's HTTP and metrics endpoints stay plain HTTP.
    """

    backend = "embedded"

    def __init__(
        self,
        repository: Path,
        models: Sequence[str] | None = None,
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        log_path: Path | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ):
        self.repository = Path(repository)
        self.tls = tls
        self.models = list(models) if models is not None else None
        self.ports = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        self.log_path = log_path
        self._requested_log_path = log_path  # log_path may later name a temporary or kept copy
        self.ready_timeout_s = ready_timeout_s
        self.log_verbose = log_verbose
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen | None = None
        self._oom_kills_at_start: int | None = None
        self._shm_at_start: set[Path] = set()
        self.version: str | None = None
        self.startup_s: float | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    def available_models(self) -> list[str]:
        """The models the repository holds (folders with a config.pbtxt)."""
        return sorted(p.name for p in self.repository.iterdir() if (p / "config.pbtxt").is_file())

    def check_models(self) -> list[str]:
        """The models to load; a missing repository, or a model it lacks, is an error said before any start."""
        if not self.repository.is_dir():
            raise ServerError(f"model repository not found: {self.repository} (run `axon train` first)")
        models = self._model_names()
        if not models:
            raise ServerError(f"no models (folders with config.pbtxt) in {self.repository}")
        return models

    def _model_names(self) -> list[str]:
        available = self.available_models()
        if self.models is None:
            return available
        # Asked of Triton, an unknown model fails minutes later as "failed to start", under
        # log lines (CUDA stubs, say) that point elsewhere; the repository answers at once.
        unknown = [m for m in self.models if m not in available]
        if unknown:
            raise ServerError(
                f"model(s) {', '.join(map(repr, unknown))} not in the repository {self.repository}; "
                f"it has: {', '.join(available) or 'no models'}"
            )
        return self.models

    def _check_ports(self) -> dict[str, int]:
        chosen: dict[str, int] = {}
        for name, port in self.ports.items():
            if port is None:
                port = free_port()
            elif port_in_use(port):
                raise ServerError(f"{name} port {port} on {LOOPBACK} is already in use")
            chosen[name] = port
        return chosen

    def command(self, backend_dir: Path, ports: dict[str, int]) -> list[str]:
        install = find_embedded()
        return [
            str(install.binary),
            f"--model-repository={self.repository.resolve()}",
            f"--backend-directory={backend_dir}",
            # Loopback only: without these Triton listens on 0.0.0.0.
            f"--grpc-address={LOOPBACK}",
            f"--http-address={LOOPBACK}",
            f"--metrics-address={LOOPBACK}",
            f"--grpc-port={ports['grpc']}",
            f"--http-port={ports['http']}",
            f"--metrics-port={ports['metrics']}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.log_verbose}",
            # Load only the requested models (all of them otherwise).
            *(["--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models)] if self.models else []),
            *(self.tls.triton_args() if self.tls else []),
            *self.extra_args,
        ]

    def start(self) -> Endpoints:
        if self.process is not None:
            return self.endpoints
        models = self.check_models()
        if self.tls:
            self.tls.check()
        install = find_embedded()
        self._workdir = tempfile.TemporaryDirectory(prefix=workdir_prefix())
        workdir = Path(self._workdir.name)
        backend_dir = prepare_backend_dir(install, workdir / "backends")
        ports = self._check_ports()
        self.log_path = self._requested_log_path or workdir / "tritonserver.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._oom_kills_at_start = oom_kills()
        with open(self.log_path, "wb") as log:
            setpriv = shutil.which(DIE_WITH_PARENT[0])
            self.process = subprocess.Popen(
                [*DIE_WITH_PARENT, *self.command(backend_dir, ports)] if setpriv else self.command(backend_dir, ports),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(install),
                cwd=workdir,
                start_new_session=True,  # its own process group, which stop() signals whole
                preexec_fn=None if setpriv else die_with_parent,
            )
        grpc = f"{LOOPBACK}:{ports['grpc']}"
        ca = self.tls.client_ca if self.tls else None
        try:
            self.version = wait_ready(
                grpc, models, self.ready_timeout_s, alive=self._raise_if_exited, ssl=self.tls is not None, ca_file=ca
            )
        except ServerError as exc:
            tail = self.log_tail()
            self.log_path = self.keep_log()
            self.stop()
            raise ServerError(
                f"embedded Triton failed to start: {exc}\n--- {self.log_path} (last lines; the whole log is kept there) ---\n{tail}"
            ) from None
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        # Read now, while the group lives: a group killed from outside (kill -9 of every member)
        # leaves no process to ask at stop, and its regions would stay in /dev/shm.
        self._shm_at_start = shm_regions(group_members(self.process.pid))
        self._endpoints = Endpoints(
            grpc=grpc,
            http=f"{LOOPBACK}:{ports['http']}",
            metrics=f"http://{LOOPBACK}:{ports['metrics']}/metrics",
            tls=self.tls is not None,
            ca_file=ca,
        )
        return self._endpoints

    def keep_log(self) -> Path | None:
        """The log, copied out of the work directory that stop() removes, so a path we print exists."""
        if self.log_path is None or not self.log_path.is_file():
            return self.log_path
        if self._workdir is None or Path(self._workdir.name) not in self.log_path.parents:
            return self.log_path  # the user's --log-dir: it stays where it is
        fd, kept = tempfile.mkstemp(prefix="axon-tritonserver-failed-", suffix=".log")
        os.close(fd)
        shutil.copyfile(self.log_path, kept)
        return Path(kept)

    def _raise_if_exited(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServerError(f"tritonserver exited with code {self.process.returncode} while starting")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The log lines most useful to a user: errors and model states first, then the tail."""
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        # Triton's error lines start with 'E' + date; the model table names UNAVAILABLE models.
        important = [ln for ln in text if ln.startswith("E") or "UNAVAILABLE" in ln or "error" in ln.lower()]
        chosen = important[-lines:] if important else text[-lines:]
        return "\n".join(chosen)

    def stop(self) -> None:
        """Terminate the whole process group (server and python-backend stubs) and wait."""
        process, self.process = self.process, None
        self._endpoints = None
        if process is not None:
            stop_group(process, STOP_TIMEOUT_S, self._shm_at_start)
            self._shm_at_start = set()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def death(self) -> str | None:
        process = self.process
        if process is None or process.poll() is None:
            return None
        return describe_exit(process.returncode, self._oom_kills_at_start)

    def memory_bytes(self) -> int | None:
        """tritonserver's and its python-backend stubs' memory together (PSS: shared pages once)."""
        process = self.process
        if process is None or process.poll() is not None:
            return None
        return group_memory_bytes(group_members(process.pid))  # setsid: the server leads its group
