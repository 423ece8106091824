"""The docker backend: Triton in a container, brought up and down with Docker Compose.

Two variants of one compose file (docker-compose.yml):

- ``gpu``: Triton's NGC image with the NVIDIA runtime, serving the ``gpu`` repository (Triton's
  ONNX Runtime backend); chosen when the engine has an ``nvidia`` runtime.
- ``cpu``: ``axon/triton-cpu:<axon version>``, built here by ``make image`` (docker/build_image.sh)
  from Debian packages and PyPI wheels: the same tritonserver 2.51 as the embedded server,
  through the python backend + onnxruntime, serving the ``embedded`` repository. A stand-in
  where there is no GPU or no registry, not the NGC image.

The variant, the images and the project name can be set from the environment
(``AXON_DOCKER_VARIANT``, ``AXON_TRITON_IMAGE``, ``AXON_CPU_IMAGE``, ``AXON_DOCKER_PROJECT``);
ports are free loopback ports picked per start. Every container carries Compose's project label,
unique per start, so "what did we leave behind" is one ``docker ps -a`` filter.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from axon.errors import ServerError
from axon.names import DEFAULT_MODELS
from axon.serving.endpoints import LOOPBACK, POLL_INTERVAL_S, ContextServer, Endpoints, free_port, wait_ready
from axon.serving.watch import group_memory_bytes

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BUILD_SCRIPT = ROOT / "docker" / "build_image.sh"
GPU_IMAGE = "nvcr.io/nvidia/tritonserver:25.12-py3"
SERVICES = {"gpu": "triton", "cpu": "triton-cpu"}
VARIANTS = ("auto", "gpu", "cpu")

PROJECT_LABEL = "com.docker.compose.project"
DOCKER_READY_TIMEOUT_S = 300.0  # the first pull of the NGC image is slow; the CPU image is ready in ~15 s
CLI_TIMEOUT_S = 30.0
DOWN_TIMEOUT_S = 90.0
ALIVE_EVERY_S = 1.0  # how often the readiness wait asks the engine whether the container still runs


def _docker(*args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    # A session of its own: a Ctrl-C at the terminal reaches axon, which then cleans up in order,
    # instead of also killing a `docker` child half-way through.
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(
            ["docker", *args], 124, "", f"`docker {' '.join(args)}` did not answer in {timeout:.0f} s"
        )


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["?"])[-1]


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) where the CLI has it, else `docker-compose` (v1), else None.

    ``AXON_COMPOSE`` overrides (e.g. ``docker-compose``). Debian ships only v1.
    """
    override = os.environ.get("AXON_COMPOSE")
    if override:
        return override.split()
    if shutil.which("docker") and _docker("compose", "version", timeout=10).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def engine_runtimes() -> tuple[dict | None, str | None]:
    """The engine's runtimes (None and why, when no engine answers)."""
    if shutil.which("docker") is None:
        return None, "the docker command is not installed (Debian: apt-get install docker.io)"
    info = _docker("info", "--format", "{{json .Runtimes}}", timeout=20)
    if info.returncode != 0:
        return (
            None,
            f"no Docker engine answers (`docker info`: {_last_line(info.stderr)}); start one, e.g. dockerd --bridge=none --iptables=false",
        )
    try:
        return json.loads(info.stdout or "{}") or {}, None
    except json.JSONDecodeError:
        return {}, None


def choose_variant(requested: str | None = None, runtimes: dict | None = None) -> str:
    """``gpu`` when asked or when the engine has the NVIDIA runtime, else ``cpu``."""
    requested = requested or os.environ.get("AXON_DOCKER_VARIANT") or "auto"
    if requested not in VARIANTS:
        raise ServerError(f"AXON_DOCKER_VARIANT must be one of {', '.join(VARIANTS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if runtimes is None:
        runtimes, _ = engine_runtimes()
    return "gpu" if runtimes and "nvidia" in runtimes else "cpu"


def cpu_image() -> str:
    from axon import version

    return os.environ.get("AXON_CPU_IMAGE") or f"axon/triton-cpu:{version()}"


def gpu_image() -> str:
    return os.environ.get("AXON_TRITON_IMAGE") or GPU_IMAGE


def image_id(image: str) -> str | None:
    done = _docker("image", "inspect", "--format", "{{.Id}}", image)
    return done.stdout.strip() or None if done.returncode == 0 else None


def cannot_build_reason() -> str | None:
    """Why docker/build_image.sh could not build the CPU image here (None: it can)."""
    cached_base = (ROOT / ".cache" / "image" / "bookworm-minbase.tar").is_file() or image_id("axon/bookworm-minbase:local")
    if cached_base:
        return None
    if os.geteuid() != 0:
        return "its Debian base is built with debootstrap, which needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    return None


def docker_unavailable_reason(variant: str | None = None) -> str | None:
    """Why the docker backend can't run here, in one line, or None if it can.

    A GPU is not required: without the NVIDIA runtime the CPU image is used, and only when that
    image is missing and can't be built here is that a reason.
    """
    runtimes, reason = engine_runtimes()
    if reason:
        return f"the docker backend needs a container engine: {reason}"
    if compose_command() is None:
        return "the docker backend needs Docker Compose: neither `docker compose` (v2) nor `docker-compose` (v1) is installed (Debian: apt-get install docker-compose)"
    try:
        chosen = choose_variant(variant, runtimes)
    except ServerError as exc:
        return str(exc)
    if chosen == "cpu" and image_id(cpu_image()) is None:
        why = cannot_build_reason()
        if why:
            return f"the docker backend's CPU image {cpu_image()} is not built and can't be built here: {why} (run `make image` as root)"
    return None


def leftover_containers(project: str) -> list[str]:
    """Containers of a compose project, running or not (ids)."""
    done = _docker("ps", "-aq", "--filter", f"label={PROJECT_LABEL}={project}")
    return done.stdout.split()


def new_project(batching: str | None = None) -> str:
    """A compose project name unique to this start: the label every one of its containers carries."""
    base = os.environ.get("AXON_DOCKER_PROJECT") or f"axon-{os.getpid()}-{secrets.token_hex(3)}"
    return f"{base}-batching-{batching}" if batching else base


def _distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class DockerServer(ContextServer):
    """Triton in a container via Docker Compose, batching on or off; the CPU or the GPU variant.

    Parameters
    ----------
    artifacts
        Output of ``axon train``: the CPU variant mounts its ``embedded`` repository.
    variant
        ``auto`` (GPU if the engine has the NVIDIA runtime), ``gpu`` or ``cpu``; default from
        ``AXON_DOCKER_VARIANT``.
    log_path
        Where the container's log is saved when it stops (default: results/ beside the records).
    build
        Build the CPU image (docker/build_image.sh) if it is missing.
    """

    backend = "docker"

    def __init__(
        self,
        batching: str = "on",
        models: Sequence[str] | None = DEFAULT_MODELS,
        artifacts: Path = Path("artifacts"),
        variant: str | None = None,
        project: str | None = None,
        compose_file: Path = COMPOSE_FILE,
        log_path: Path | None = None,
        ready_timeout_s: float = DOCKER_READY_TIMEOUT_S,
        compose: Sequence[str] | None = None,
        build: bool = True,
    ):
        self.batching = batching
        self.models = list(models or DEFAULT_MODELS)
        self.artifacts = Path(artifacts)
        self._requested_variant = variant
        self.variant: str | None = None
        self.project = project or new_project(batching)
        self.compose_file = Path(compose_file)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.container_log = Path(log_path) if log_path else Path("results") / f"triton-docker-{stamp}-batching-{batching}.log"
        self.ready_timeout_s = ready_timeout_s
        self._compose_cmd = list(compose) if compose else None
        self.build = build
        self.version: str | None = None
        self.image: str | None = None
        self.image_id: str | None = None
        self.container: str | None = None
        self.ports: dict[str, int] = {}
        self._created = False
        self._next_alive_check = 0.0
        self._next_death_check, self._death = 0.0, None
        self._pid: int | None = None  # the container's first process, as this machine sees it

    # ------------------------------------------------------------------ checks before any work

    def repository(self) -> Path:
        variant = self.variant or choose_variant(self._requested_variant, {})
        if variant == "cpu":
            return self.artifacts / "repositories" / "embedded" / f"batching_{self.batching}"
        root = Path(os.environ.get("AXON_GPU_REPOSITORY") or self.compose_file.parent / "model_repository")
        return root / f"batching_{self.batching}"

    def check_models(self) -> list[str]:
        """An engine, compose and an image are there, and the repository the container will mount
        holds every model: said before anything starts (`axon bench` calls this first)."""
        reason = docker_unavailable_reason(self._requested_variant)
        if reason:
            raise ServerError(reason)
        self.variant = variant = choose_variant(self._requested_variant)
        repo = self.repository()
        needed = ["config.pbtxt", "1/model.onnx"] + (["1/model.py"] if variant == "cpu" else [])
        missing = [m for m in self.models if not all((repo / m / f).is_file() for f in needed)]
        if missing:
            how = (
                "run `axon train` (or give --artifacts)"
                if variant == "cpu"
                else "write it with `axon train --gpu-repository model_repository`"
            )
            raise ServerError(f"the docker backend's {variant} container mounts {repo}, which lacks {', '.join(missing)}; {how}")
        return self.models

    # ------------------------------------------------------------------ compose

    def compose_prefix(self) -> list[str]:
        if self._compose_cmd is None:
            self._compose_cmd = compose_command()
            if self._compose_cmd is None:
                raise ServerError("the docker backend needs Docker Compose (docker compose or docker-compose)")
        return [*self._compose_cmd, "-f", str(self.compose_file), "-p", self.project]

    @property
    def service(self) -> str:
        return SERVICES[self.variant or "cpu"]

    def environment(self) -> dict[str, str]:
        """What docker-compose.yml reads: image, variant's profile, ports, repository, batching."""
        env = {
            "AXON_BATCHING": self.batching,
            "AXON_GRPC_PORT": str(self.ports["grpc"]),
            "AXON_HTTP_PORT": str(self.ports["http"]),
            "AXON_METRICS_PORT": str(self.ports["metrics"]),
            "AXON_ARTIFACTS": str(self.artifacts.resolve()),
        }
        if self.variant == "cpu":
            env |= {"AXON_CPU_IMAGE": self.image or cpu_image(), "COMPOSE_PROFILES": "cpu"}
        else:
            env |= {
                "AXON_TRITON_IMAGE": self.image or gpu_image(),
                "AXON_GPU_REPOSITORY": str(self.repository().parent.resolve()),
            }
        return env

    def _compose(self, *args: str, timeout: float = CLI_TIMEOUT_S, shield: bool = False) -> subprocess.CompletedProcess:
        """Run one compose command; a short polling wait that Ctrl-C can interrupt, unless ``shield``
        (teardown: a second Ctrl-C must not leave a container half removed)."""
        cmd = [*self.compose_prefix(), *args]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, **self.environment()),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        interrupted: BaseException | None = None
        while True:
            try:
                out, err = proc.communicate(timeout=POLL_INTERVAL_S)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    out, err = proc.communicate()
                    err = f"{err}\n`{' '.join(cmd)}` did not finish in {timeout:.0f} s"
                    break
            except KeyboardInterrupt as exc:
                if not shield:
                    proc.kill()
                    proc.communicate()
                    raise
                interrupted = exc
        if interrupted is not None:
            raise interrupted
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def _up(self) -> None:
        done = self._compose("up", "-d", "--no-build", self.service, timeout=self.ready_timeout_s)
        if done.returncode != 0:
            raise ServerError(f"`{' '.join(done.args)}` failed: {_last_line(done.stderr)}")

    def _down(self) -> None:
        self._compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=DOWN_TIMEOUT_S, shield=True)

    # ------------------------------------------------------------------ life cycle

    def _ensure_image(self) -> None:
        if self.variant == "gpu":
            self.image = gpu_image()  # compose pulls it on up if the engine lacks it
            return
        self.image = cpu_image()
        if image_id(self.image) is not None:
            return
        if not self.build or not BUILD_SCRIPT.is_file():
            raise ServerError(f"the CPU image {self.image} is not built: run `make image`")
        print(
            f"axon: building the CPU Triton image {self.image} (docker/build_image.sh; minutes the first time)",
            file=sys.stderr,
            flush=True,
        )
        py = ROOT / ".venv" / "bin" / "python"
        env = dict(os.environ, PY=str(py if py.exists() else sys.executable), AXON_CPU_IMAGE=self.image)
        proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], env=env, stdout=sys.stderr, stderr=sys.stderr)
        while proc.poll() is None:  # interruptible: Ctrl-C stops the build (the script keeps its caches)
            try:
                proc.wait(timeout=POLL_INTERVAL_S)
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:
                proc.terminate()
                raise
        if proc.returncode != 0 or image_id(self.image) is None:
            raise ServerError(f"building the CPU image {self.image} failed (docker/build_image.sh exited {proc.returncode})")

    def _alive(self) -> None:
        """Raise at once when the container stops while Triton starts (checked about once a second)."""
        now = time.monotonic()
        if now < self._next_alive_check:
            return
        self._next_alive_check = now + ALIVE_EVERY_S
        if self.container is None:
            self.container = self._container_id()
            if self.container is None:
                raise ServerError(f"compose started no {self.service} container in project {self.project}")
        state = _docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.container)
        status, _, code = state.stdout.strip().partition(" ")
        if state.returncode == 0 and status not in ("running", "created", "restarting"):
            raise ServerError(f"the container {status} (exit code {code}) while Triton was starting")

    def _container_id(self) -> str | None:
        ids = _docker(
            "ps",
            "-aq",
            "--filter",
            f"label={PROJECT_LABEL}={self.project}",
            "--filter",
            f"label=com.docker.compose.service={self.service}",
        ).stdout.split()
        return ids[0] if ids else None

    def start(self) -> Endpoints:
        if self._created:
            return self.endpoints
        self.check_models()
        self._ensure_image()
        ports = _distinct_free_ports(3)
        self.ports = {"grpc": ports[0], "http": ports[1], "metrics": ports[2]}
        grpc = f"{LOOPBACK}:{self.ports['grpc']}"
        # From here on a container may exist: every way out of start() goes through stop().
        self._created = True
        try:
            self._up()
            self.container = self._container_id()
            self.version = wait_ready(grpc, self.models, self.ready_timeout_s, alive=self._alive)
            self.image_id = _docker("inspect", "--format", "{{.Image}}", self.container).stdout.strip() or image_id(self.image)
        except ServerError as exc:
            self.stop()
            raise ServerError(
                f"Triton in a container ({self.variant}, {self.image}) failed to start: {exc}\n--- {self.container_log} (last lines) ---\n{self.log_tail()}"
            ) from None
        except BaseException:
            self.stop()
            raise
        self._endpoints = Endpoints(
            grpc=grpc,
            http=f"{LOOPBACK}:{self.ports['http']}",
            metrics=f"http://{LOOPBACK}:{self.ports['metrics']}/metrics",
            server_info={
                "image": self.image,
                "image_id": self.image_id,
                "docker_variant": self.variant,
                "compose_project": self.project,
            },
        )
        return self._endpoints

    def death(self) -> str | None:
        """How the container stopped (exit code, OOM kill, removed), or None while it runs.

        Asked every fraction of a second by `axon serve` and a run's watch; the engine is asked
        at most once a second (an inspect costs tens of ms), and a death, once seen, stays.
        """
        if not self._created or self.container is None or self._death is not None:
            return self._death
        now = time.monotonic()
        if now < self._next_death_check:
            return None
        self._next_death_check = now + ALIVE_EVERY_S
        state = _docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}", self.container)
        # Worded to follow "the Triton axon started was ...", as the embedded server's are.
        if state.returncode != 0:
            self._death = f"removed with its container {self.container[:12]} from outside axon"
            return self._death
        status, code, oom = (state.stdout.split() + ["", "", ""])[:3]
        if status in ("running", "created", "restarting"):
            return None
        if oom == "true":
            said = f"killed by the kernel's OOM killer in its container (exit code {code})"
        elif code == "137":
            said = "killed by SIGKILL in its container (exit code 137: `docker kill`, or the kernel's OOM killer)"
        else:
            said = f"stopped in its container ({status}, exit code {code})"
        self._death = said
        return said

    def memory_bytes(self) -> int | None:
        """The container's processes' memory together (PSS, as for the embedded server), or None."""
        if not self._created or self.container is None or self.death() is not None:
            return None
        if self._pid is None:
            found = _docker("inspect", "--format", "{{.State.Pid}}", self.container).stdout.strip()
            self._pid = int(found) if found.isdigit() and int(found) > 0 else None
        if self._pid is None:
            return None
        import psutil

        try:
            pids = [self._pid, *(c.pid for c in psutil.Process(self._pid).children(recursive=True))]
        except psutil.Error:
            return None
        return group_memory_bytes(pids)

    def save_logs(self) -> Path | None:
        """The container's whole log (Triton's stderr) to ``container_log``, before `down` removes it."""
        if self.container is None:
            self.container = self._container_id()
        if self.container is None:
            return None
        with contextlib.suppress(OSError):
            self.container_log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.container_log, "wb") as log:
                subprocess.run(
                    ["docker", "logs", "--timestamps", self.container],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=CLI_TIMEOUT_S,
                    start_new_session=True,
                    check=False,
                )
            return self.container_log
        return None

    def keep_log(self) -> Path | None:
        """The container's log saved now (as `axon serve` does when its server dies)."""
        return self.save_logs()

    def log_tail(self, lines: int = 12) -> str:
        if not self.container_log.is_file():
            return "(no container log)"
        text = self.container_log.read_text(errors="replace").splitlines()
        important = [ln for ln in text if " E" in ln[:40] or "UNAVAILABLE" in ln or "error" in ln.lower()]
        return "\n".join((important or text)[-lines:])

    def stop(self) -> None:
        """Save the log, then `compose down`; whatever compose left of the project is removed too."""
        self._endpoints = None
        if not self._created:
            return
        try:
            saved = self.save_logs()
            if saved:
                print(f"axon: container log saved to {saved}", file=sys.stderr, flush=True)
        finally:
            try:
                self._down()
            finally:
                self._created = False
                left = leftover_containers(self.project)
                if left:  # compose failed (or was killed): remove by label, never by name
                    _docker("rm", "-f", "-v", *left, timeout=DOWN_TIMEOUT_S)
                self.container = None
