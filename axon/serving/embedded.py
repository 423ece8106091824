"""Triton servers behind one interface: embedded (default), docker (GPU container), external.

Every backend gives :class:`Endpoints` once ready and is a context manager, so a fixture or the
CLI writes ``with server: ...`` and never leaks a process. Only the embedded backend owns a
process; docker owns a compose project; external owns nothing and is never started or stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from axon.errors import ServerError
from axon.serving.watch import group_memory_bytes

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.2
LOG_TAIL_LINES = 12
LOOPBACK = "127.0.0.1"
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
        return {"grpc": self.grpc, "http": self.http, "metrics": self.metrics, "tls": self.tls, "ca_file": self.ca_file, **self.server_info}


class Server(Protocol):
    backend: str

    def start(self) -> Endpoints: ...

    def stop(self) -> None: ...

    @property
    def endpoints(self) -> Endpoints: ...


class _ContextServer:
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
    with grpcclient.InferenceServerClient(grpc_url, ssl=ssl, root_certificates=str(ca_file) if ssl and ca_file else None) as client:
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
        with grpcclient.InferenceServerClient(endpoints.grpc, ssl=endpoints.tls, root_certificates=endpoints.ca_file if endpoints.tls else None) as client:
            return bool(client.is_server_live(headers=endpoints.headers or None, client_timeout=timeout_s))
    except InferenceServerException:
        return False


# --------------------------------------------------------------------------- embedded


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
        raise ServerError(f"no python-backend stub for Python {sys.version_info.major}.{sys.version_info.minor} in {stub.parent.parent}")
    python_dir = into / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (install.root / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, python_dir / item.name)
    shutil.copy2(stub, python_dir / stub.name)
    return into


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


# The server dies with axon (SIGTERM, even when axon is SIGKILLed): util-linux's setpriv sets
# the parent-death signal and execs tritonserver, which keeps it across the exec.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM"]


def _die_with_parent() -> None:
    """In the child, before exec, where setpriv is missing: SIGTERM if axon dies.

    Only a fallback: a pre-exec hook makes Python fork() rather than vfork(), so grpc's fork
    handlers run in the child, and one restarted its poller there, met the descriptors
    Popen closes, and aborted the child (seen with h2load, 2026-12-01).
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


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
        args = ["--grpc-use-ssl=true", f"--grpc-server-cert={Path(self.cert).resolve()}", f"--grpc-server-key={Path(self.key).resolve()}"]
        return args + ([f"--grpc-root-cert={Path(self.ca).resolve()}"] if self.ca else [])


class EmbeddedServer(_ContextServer):
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
                preexec_fn=None if setpriv else _die_with_parent,
            )
        grpc = f"{LOOPBACK}:{ports['grpc']}"
        ca = self.tls.client_ca if self.tls else None
        try:
            self.version = wait_ready(grpc, models, self.ready_timeout_s, alive=self._raise_if_exited, ssl=self.tls is not None, ca_file=ca)
        except ServerError as exc:
            tail = self.log_tail()
            self.log_path = self.keep_log()
            self.stop()
            raise ServerError(f"embedded Triton failed to start: {exc}\n--- {self.log_path} (last lines; the whole log is kept there) ---\n{tail}") from None
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        # Read now, while the group lives: a group killed from outside (kill -9 of every member)
        # leaves no process to ask at stop, and its regions would stay in /dev/shm.
        self._shm_at_start = _shm_regions(_group_members(self.process.pid))
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
            _stop_group(process, STOP_TIMEOUT_S, self._shm_at_start)
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
        return group_memory_bytes(_group_members(process.pid))  # setsid: the server leads its group


def describe_exit(returncode: int, oom_kills_before: int | None = None) -> str:
    """``exited with code 1``, ``killed by SIGKILL``; the OOM killer named when the cgroup counted it."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else f"signal {-returncode}"
    said = f"killed by {name}"
    if -returncode == signal.SIGKILL:
        after = oom_kills()
        if oom_kills_before is not None and after is not None and after > oom_kills_before:
            said += " (the kernel's OOM killer: this machine's memory ran out)"
    return said


def oom_kills() -> int | None:
    """The OOM kills counted in this process's cgroup (cgroup v2), or None where it can't be read."""
    with contextlib.suppress(OSError, ValueError):
        cgroup = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[-1]
        for events in (Path("/sys/fs/cgroup") / cgroup.lstrip("/") / "memory.events", Path("/sys/fs/cgroup/memory.events")):
            if events.is_file():
                for line in events.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return None


# The python backend's shared memory: one region per model instance, made by tritonserver and
# mapped by its stubs. A killed server leaves them in /dev/shm (tens of MB each).
SHM_MARK = "triton_python_backend_shm_region"


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
    return members


def _shm_regions(pids: list[int]) -> set[Path]:
    """The python backend's shared-memory files that these processes have mapped."""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
                if SHM_MARK in path:
                    found.add(Path(path.removesuffix(" (deleted)")))
    return found


def _stop_group(process: subprocess.Popen, timeout_s: float, known_regions: set[Path] = frozenset()) -> None:
    pgid = process.pid  # setsid made the child its own group leader
    # Read before the group dies: which shared-memory regions are this server's (never another's).
    regions = _shm_regions(_group_members(pgid)) | set(known_regions)
    # A dead server can't unload its models: its stubs get no grace, only SIGKILL.
    steps = ((signal.SIGKILL, 5.0),) if process.poll() is not None else ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0))
    for sig, wait_s in steps:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # The stubs are in the same group; make sure none outlives the server.
    deadline = time.monotonic() + 5.0
    while _group_alive(pgid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)
    for region in regions:  # a server that stopped cleanly removed its own; a killed one did not
        with contextlib.suppress(OSError):
            region.unlink()


def _group_alive(pgid: int) -> bool:
    """Whether a member of the group still runs. Zombies don't count: a stub orphaned by a killed
    server is reaped by init, which may take a second or more; signalling the group would
    "succeed" on the zombie all that while, and hold axon's exit past its 2 s promise."""
    for pid in _group_members(pgid):
        with contextlib.suppress(OSError, IndexError):
            # /proc/PID/stat: "pid (comm) state ...": comm may hold spaces, so split after its ')'.
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state not in ("Z", "X"):
                return True
    return False
