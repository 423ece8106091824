"""pytest plugin: options, session-scoped Triton servers, and the ``axon_bench`` fixture.

``axon_bench(model, batching, concurrency=...)`` (or ``rate=...``) runs one load case, gives
pytest-benchmark the per-request latencies as its samples (so ``min``/``median``/``IQR`` in its
JSON are request latencies and ``--benchmark-compare-fail=median:10%`` gates on them), puts
axon's whole record in ``extra_info["axon"]``, and fails the case on a broken SLO budget.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from axon.errors import AxonError
from axon.records import repeats
from axon.serving import backends
from axon.verdicts import slo

BATCHING = ("on", "off")
# Messages from shared code name these options, not the CLI's.
OPTIONS = {"engine": "--axon-engine", "metrics_url": "--triton-metrics-url", "duration": "--axon-duration"}
ON_THE_FLY_ROWS = 20_000
ON_THE_FLY_EPOCHS = 2


class ClientBoundWarning(UserWarning):
    """The client, not the server, may have limited this run."""


@dataclass(frozen=True)
class Settings:
    backend: str
    url: str | None
    metrics_url: str | None
    external_batching: str
    duration_s: float
    warmup_s: float
    processes: int | str
    client_bound_cores: float
    artifacts: Path | None  # None: none given and no ./artifacts, so small models are trained on the fly
    slo_file: Path | None
    engine: str = "auto"
    repeat: int = 1
    skip_unavailable: bool = False
    dask: str | None = None  # a Dask scheduler: offer each case's load from its workers
    hosts: int | None = None
    tls: bool = False
    ca_file: str | None = None
    docker_variant: str | None = None
    log_dir: Path = Path("results")
    onnx: tuple = ()  # the user's own models (axon.offline.user_model.UserModel), added to the matrix
    shapes: tuple = ()  # --axon-shape: (input name, dims) for their open dimensions
    paths: tuple = ()  # --axon-path: trigger paths (axon.workload.path.TriggerPath), in the matrix as "path:<name>"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("axon", "axon: Triton inference benchmarks")
    group.addoption("--triton", choices=("embedded", "docker", "external"), default="embedded", help="which Triton to benchmark (default embedded)")
    group.addoption("--triton-url", help="--triton=external: HOST:PORT of Triton's gRPC endpoint")
    group.addoption(
        "--triton-skip-unavailable",
        action="store_true",
        help="--triton=docker: skip the benchmark cases where a container engine (or the CPU image, unbuildable here) is missing (default: that is an error)",
    )
    group.addoption(
        "--triton-docker-variant",
        choices=("auto", "gpu", "cpu"),
        default=None,
        help="--triton=docker: the NGC GPU image or axon's CPU image (default auto: GPU where the engine has the NVIDIA runtime; env AXON_DOCKER_VARIANT)",
    )
    group.addoption("--triton-log-dir", help="--triton=docker: where each container's log is saved (default: beside --benchmark-json, else ./results)")
    group.addoption("--triton-metrics-url", help="--triton=external: Triton's Prometheus metrics URL")
    group.addoption("--triton-batching", choices=BATCHING, default="on", help="--triton=external: the batching mode that server runs (default on)")
    group.addoption("--triton-tls", action="store_true", help="--triton=external: gRPC over TLS, the server's certificate verified")
    group.addoption("--triton-ca-file", help="--triton-tls: PEM file of the CA that signed the server's certificate (default: the system's CAs)")
    group.addoption("--axon-duration", type=float, default=3.0, help="measurement window per case, seconds (default 3)")
    group.addoption("--axon-warmup", type=float, default=1.0, help="warm-up per case, seconds (default 1)")
    group.addoption("--axon-processes", default="auto", help="load-generator processes per case (default auto)")
    group.addoption("--axon-client-bound-cores", type=float, default=0.8, help="flag a case client-bound above this share of a core per process")
    group.addoption(
        "--axon-artifacts",
        help="output of `axon train` (default ./artifacts; if there is none, small synthetic models are trained on the fly, "
        "said in the summary and in each record)",
    )
    group.addoption(
        "--axon-engine",
        choices=("auto", "native", "python"),
        default="auto",
        help="load engine: auto (default: native h2load for closed loop and constant-rate open loop where available, else python, said in the output; "
        "Poisson arrivals always run on python), native or python",
    )
    group.addoption("--axon-repeat", type=int, default=1, help="run each case this many times; the gate compares run-level values (default 1)")
    group.addoption("--axon-dask", metavar="ADDRESS", help="offer the load from the workers of this Dask scheduler (docs/many-hosts.md)")
    group.addoption("--axon-hosts", type=int, help="with --axon-dask: how many workers offer load (default all)")
    group.addoption("--axon-onnx", action="append", default=[], metavar="PATH", help="add your own ONNX model to the matrix (repeatable): served beside v1 and v2 from a repository axon writes, "
        "fed generated inputs, checked against onnxruntime; its name (the file's stem) selects it in SLO budgets")
    group.addoption("--axon-path", action="append", default=[], metavar="FILE.toml", help="add a trigger path to the matrix (repeatable): several models per event, "
        "steps in order; its event latency is judged (SLO: path = NAME, event_p50_ms, event_p99_ms)")
    group.addoption("--axon-shape", action="append", default=[], metavar="NAME:d1,d2", help="an --axon-onnx input's open dimensions, batch axis excluded (repeatable)")
    group.addoption("--axon-slo-file", help="TOML with [[slo]] budgets (default: [[tool.axon.slo]] in the rootdir's pyproject.toml)")


def _settings(config: pytest.Config) -> Settings:
    # Imported here: the plugin loads in every pytest session, benchmarks or not.
    from axon.engines.payloads import resolve_artifacts
    from axon.offline.pipeline import MANIFEST_FILE

    opt = config.getoption
    duration, warmup = opt("--axon-duration"), opt("--axon-warmup")
    if not duration > 0 or warmup < 0:
        raise pytest.UsageError(f"--axon-duration must be > 0 and --axon-warmup >= 0, got {duration} and {warmup}")
    if opt("--triton") == "external" and not opt("--triton-url"):
        raise pytest.UsageError("--triton=external needs --triton-url HOST:PORT")
    if opt("--triton-url"):
        _usage(backends.check_url, opt("--triton-url"), "--triton-url")
    if opt("--triton") == "docker" and not opt("--triton-skip-unavailable"):
        # A CI job must not go green having run nothing: a missing engine is an error unless asked.
        reason = backends.docker_unavailable_reason(opt("--triton-docker-variant"))
        if reason:
            raise pytest.UsageError(f"--triton=docker: {reason}; pass --triton-skip-unavailable to skip the benchmark cases instead")
    if (opt("--triton-docker-variant") or opt("--triton-log-dir")) and opt("--triton") != "docker":
        raise pytest.UsageError("--triton-docker-variant and --triton-log-dir go with --triton=docker")
    bench_json = opt("--benchmark-json", None)
    if bench_json is not None and not isinstance(bench_json, (str, Path)):
        bench_json = bench_json.name  # an open file, in pytest-benchmark versions that open it
    log_dir = Path(opt("--triton-log-dir") or (Path(bench_json).parent if bench_json else "results"))
    given = opt("--axon-artifacts")
    artifacts = _usage(resolve_artifacts, Path(given) if given else None, "--axon-artifacts")
    if artifacts is not None and not (artifacts / MANIFEST_FILE).is_file():
        if given:
            raise pytest.UsageError(f"--axon-artifacts {given}: no {MANIFEST_FILE} there; is it the output of `axon train`?")
        artifacts = None  # a ./artifacts that `axon train` did not write: as if there were none
    if (opt("--triton-tls") or opt("--triton-ca-file")) and opt("--triton") != "external":
        raise pytest.UsageError("--triton-tls and --triton-ca-file go with --triton=external")
    if opt("--triton-ca-file") and not opt("--triton-tls"):
        raise pytest.UsageError("--triton-ca-file is the CA that verifies a TLS server: give --triton-tls with it")
    processes = opt("--axon-processes")
    if processes != "auto":
        if not str(processes).isdigit() or int(processes) < 1:
            raise pytest.UsageError(f"--axon-processes must be a whole number >= 1 or auto, got {processes!r}")
        processes = int(processes)
    if opt("--axon-hosts") is not None and (not opt("--axon-dask") or opt("--axon-hosts") < 1):
        raise pytest.UsageError("--axon-hosts must be >= 1 and goes with --axon-dask ADDRESS")
    if opt("--axon-repeat") < 1:
        raise pytest.UsageError(f"--axon-repeat must be >= 1, got {opt('--axon-repeat')}")
    from axon.offline import user_model
    from axon.workload.signature import parse_shape

    onnx = tuple(_usage(user_model.load, [Path(p) for p in opt("--axon-onnx")]))
    shapes = tuple(_usage(parse_shape, text) for text in opt("--axon-shape"))
    if shapes and not onnx:
        raise pytest.UsageError("--axon-shape gives an --axon-onnx model's open dimensions: give --axon-onnx with it")
    for model in onnx:
        _usage(model.signature.check_supported, f"--axon-onnx {model.path}")
        _usage(model.signature.request_shapes, 1, dict(shapes), f"model {model.name!r}")
    from axon.names import served_name
    from axon.workload.path import load as load_path

    paths = tuple(_usage(load_path, Path(p), served_name) for p in opt("--axon-path"))
    slo_file = opt("--axon-slo-file")
    if slo_file is None and (config.rootpath / "pyproject.toml").is_file():
        slo_file = config.rootpath / "pyproject.toml"
    return Settings(
        backend=opt("--triton"),
        url=opt("--triton-url"),
        metrics_url=opt("--triton-metrics-url"),
        external_batching=opt("--triton-batching"),
        duration_s=duration,
        warmup_s=warmup,
        processes=processes,
        client_bound_cores=opt("--axon-client-bound-cores"),
        artifacts=artifacts,
        slo_file=Path(slo_file) if slo_file else None,
        engine=opt("--axon-engine"),
        repeat=opt("--axon-repeat"),
        skip_unavailable=opt("--triton-skip-unavailable"),
        dask=opt("--axon-dask"),
        hosts=opt("--axon-hosts"),
        tls=opt("--triton-tls"),
        ca_file=opt("--triton-ca-file"),
        docker_variant=opt("--triton-docker-variant"),
        log_dir=log_dir,
        onnx=onnx,
        shapes=shapes,
        paths=paths,
    )


def _usage(check, *args):
    """Run a check from shared code; its AxonError becomes pytest's usage error, said once."""
    try:
        return check(*args)
    except AxonError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "axon_smoke: a quick benchmark case run by the test command")
    config.addinivalue_line("markers", "axon_models: parametrise the case's `model` over v1, v2 and every --axon-onnx model")
    config._axon_settings = _settings(config)  # validated once, before any case runs
    config._axon_budgets = _budgets(config._axon_settings)  # likewise: one message, not one per case
    config._axon_notes = []
    config.pluginmanager.register(DockerFixtures(), "axon-docker-fixtures")
    config._axon_cases = []  # one line per measured case, printed in the terminal summary


@pytest.fixture(scope="session")
def axon_settings(pytestconfig) -> Settings:
    return pytestconfig._axon_settings


def _budgets(settings: Settings) -> list[slo.Budget]:
    if settings.slo_file is None:
        return []
    # An external server may serve any model, so only then are model names left unchecked.
    models = None if settings.backend == "external" else (*slo.KNOWN_MODELS, *(m.name for m in settings.onnx), *(m.name for p in settings.paths for m in _path_users(p)))
    try:
        return slo.load_budgets(settings.slo_file, models=models)
    except AxonError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def axon_budgets(pytestconfig) -> list[slo.Budget]:
    return pytestconfig._axon_budgets


def on_the_fly_notice(out: Path) -> str:
    return (
        f"no --axon-artifacts and no ./artifacts: benchmarked small models trained on the fly "
        f"({ON_THE_FLY_ROWS:,} synthetic rows, {ON_THE_FLY_EPOCHS} epochs, in {out}); run `axon train` for the real ones"
    )


@pytest.fixture(scope="session")
def axon_artifacts(axon_settings, tmp_path_factory, pytestconfig) -> Path:
    """`axon train` output; only when none was given and there is no ./artifacts, a small synthetic set trained now."""
    from axon.offline import data, pipeline

    if axon_settings.artifacts is not None:
        return axon_settings.artifacts
    out = tmp_path_factory.mktemp("axon-artifacts")
    pipeline.build(data.synthetic(ON_THE_FLY_ROWS, seed=0), out, epochs=ON_THE_FLY_EPOCHS)
    pytestconfig._axon_on_the_fly = on_the_fly_notice(out)
    pytestconfig._axon_notes.append(pytestconfig._axon_on_the_fly)
    return out


class _Servers:
    """One server per batching mode, started on first use, stopped at session end.

    embedded: axon starts both modes as needed. docker: one container per batching mode, each a
    compose project brought up and down through pytest-docker (see :class:`_PytestDockerServer`).
    external: the one server given, whose batching mode the user states.
    """

    def __init__(self, settings: Settings, artifacts: Path, request: pytest.FixtureRequest):
        self.settings, self.artifacts, self.request = settings, artifacts, request
        self.running: dict = {}

    def get(self, batching: str):
        from axon.errors import ServerError

        s = self.settings
        if s.backend == "external" and batching != s.external_batching:
            pytest.skip(f"this external server serves batching {s.external_batching}; run again with --triton-batching {batching} for this case")
        if s.backend == "docker" and batching not in self.running:
            reason = backends.docker_unavailable_reason(s.docker_variant)
            if reason:  # only reached with --triton-skip-unavailable: without it the session refused to start
                pytest.skip(reason)
        if batching not in self.running:
            try:
                server = (
                    self._docker(batching)
                    if s.backend == "docker"
                    else backends.make_server(s.backend, batching=batching, artifacts=self.artifacts, url=s.url, metrics_url=s.metrics_url, tls=s.tls, ca_file=s.ca_file)
                )
                if s.backend == "docker":
                    self.running[batching] = server  # before start: whatever a failed start leaves is torn down with the rest
                server.start()
            except ServerError as exc:
                self.running.pop(batching, None)
                pytest.fail(f"Triton ({s.backend}, batching {batching}) did not start: {exc}", pytrace=False)
            self.running[batching] = server
        return self.running[batching]

    def _docker(self, batching: str):
        """A container per batching mode, through pytest-docker's fixtures (compose command, file,
        project name, setup and cleanup commands), then the same readiness check as any server."""
        value = self.request.getfixturevalue
        project = value("docker_compose_project_name")
        server = _PytestDockerServer(
            batching,
            artifacts=self.artifacts,
            variant=value("axon_docker_variant"),
            project=f"{project}-batching-{batching}",
            compose_file=Path(value("docker_compose_file")),
            compose=value("docker_compose_command").split(),
            log_path=self.settings.log_dir / f"triton-docker-{project}-batching-{batching}.log",
        )
        server.setup, server.cleanup = value("docker_setup"), value("docker_cleanup")
        return server

    def stop(self) -> None:
        try:
            for server in self.running.values():
                server.stop()
        finally:
            self.running.clear()


class _PytestDockerServer(backends.DockerServer):
    """:class:`~axon.serving.docker.DockerServer` whose compose up and down are pytest-docker's.

    pytest-docker runs ``docker_setup`` and ``docker_cleanup`` through the shell with this
    process's environment, so the compose variables (ports, repository, image, profile) are put
    into ``os.environ`` around each call. Its setup runs outside its own ``try``: when ``up``
    fails half-way, DockerServer's own ``down`` and label sweep remove what it left.
    """

    setup: list[str] | str = ()
    cleanup: list[str] | str = ()
    _services = None

    def _up(self) -> None:
        from pytest_docker.plugin import get_docker_services

        from axon.errors import ServerError

        manager = get_docker_services(" ".join(self._compose_cmd), str(self.compose_file), self.project, self.setup, self.cleanup)
        try:
            with _environ(self.environment()):
                manager.__enter__()
        except Exception as exc:  # pytest-docker raises a bare Exception holding compose's output
            raise ServerError("compose up failed: " + _last_line(str(exc).rstrip('".'))) from None
        self._services = manager

    def _down(self) -> None:
        manager, self._services = self._services, None
        if manager is not None:
            try:
                with _environ(self.environment()):
                    manager.__exit__(None, None, None)
                return
            except Exception:
                pass  # pytest-docker's cleanup failed: ours below (shielded from a second Ctrl-C)
        super()._down()


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["?"])[-1]


class _environ:
    """Set environment variables for the duration of a block, then put back what was there."""

    def __init__(self, values: dict[str, str]):
        self.values, self.saved = values, {}

    def __enter__(self):
        import os

        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        import os

        for key, old in self.saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@pytest.fixture(scope="session")
def axon_docker_variant(axon_settings, pytestconfig) -> str:
    """gpu or cpu: the NGC image where the engine has the NVIDIA runtime, else axon's CPU image (said once)."""
    from axon.serving.docker import choose_variant, cpu_image, gpu_image

    variant = choose_variant(axon_settings.docker_variant)
    image = gpu_image() if variant == "gpu" else cpu_image()
    if axon_settings.docker_variant not in (None, "auto"):
        why = "asked for"
    else:
        why = "the engine has the NVIDIA runtime" if variant == "gpu" else "no NVIDIA runtime in the engine"
    pytestconfig._axon_notes.append(f"--triton=docker ran the {variant} image {image} ({why}); container logs in {axon_settings.log_dir}")
    return variant


class DockerFixtures:
    """pytest-docker's fixtures as axon needs them, registered in :func:`pytest_configure`.

    Between two plugins defining one fixture, pytest uses the one registered last; entry-point
    plugins load in an order that differs between environments, and on a fresh venv
    pytest-docker's defaults (`docker compose`, `up --build --wait`) won where Debian has only
    Compose v1. Registered at configure time, after every entry point, these always win; a
    user's conftest.py still overrides them.
    """

    @pytest.fixture(scope="session")
    def docker_compose_command(self) -> str:
        """pytest-docker: `docker compose` (v2) where the CLI has it, else `docker-compose` (v1)."""
        from axon.serving.docker import compose_command

        return " ".join(compose_command() or ["docker", "compose"])

    @pytest.fixture(scope="session")
    def docker_compose_project_name(self) -> str:
        """pytest-docker: a project name unique to this session, which every container carries as a
        label (AXON_DOCKER_PROJECT sets it, so a caller can look for leftovers)."""
        from axon.serving.docker import new_project

        return new_project()

    @pytest.fixture(scope="session")
    def docker_setup(self, axon_docker_variant) -> list[str]:
        """pytest-docker: start only the chosen variant's service (the CPU one is behind a profile)."""
        from axon.serving.docker import SERVICES

        return [f"up -d --no-build {SERVICES[axon_docker_variant]}"]

    @pytest.fixture(scope="session")
    def docker_cleanup(self) -> list[str]:
        return ["down -v --remove-orphans --timeout 10"]

    @pytest.fixture(scope="session")
    def docker_compose_file(self):
        """pytest-docker: axon's compose file (the GPU service by default, the CPU one under profile `cpu`)."""
        from axon.serving.docker import COMPOSE_FILE

        return str(COMPOSE_FILE)


def _with_user_models(settings: Settings, artifacts: Path, into: Path) -> Path:
    """The repositories a server axon starts serves: the trained ones, plus the user's models beside them."""
    import shutil

    from axon.offline import user_model

    # The user's models: --axon-onnx's, and those the paths call by file.
    users = list(settings.onnx) + [m for p in settings.paths for m in _path_users(p)]
    if not users:
        return artifacts
    shutil.copytree(artifacts / "repositories", into / "repositories")
    return user_model.write_artifacts(list({m.name: m for m in users}.values()), into)


def _path_users(path) -> list:
    from axon.offline.user_model import load

    files = {c.model: c.onnx for s in path.steps for c in s.calls if c.onnx is not None}
    return load(list(files.values()), list(files)) if files else []


def pytest_generate_tests(metafunc) -> None:
    """A benchmark marked ``axon_models`` runs over v1, v2 and every --axon-onnx model (its ``model`` argument)."""
    if metafunc.definition.get_closest_marker("axon_models") is not None and "model" in metafunc.fixturenames:
        settings = metafunc.config._axon_settings
        metafunc.parametrize("model", (*MATRIX_MODELS, *(m.name for m in settings.onnx), *(f"path:{p.name}" for p in settings.paths)))


MATRIX_MODELS = ("v1", "v2")


@pytest.fixture(scope="session")
def axon_servers(axon_settings, axon_artifacts, request, tmp_path_factory):
    served = _with_user_models(axon_settings, axon_artifacts, tmp_path_factory.mktemp("axon-served")) if axon_settings.backend != "external" else axon_artifacts
    servers = _Servers(axon_settings, served, request)
    yield servers
    servers.stop()


def feed_benchmark(benchmark, record: dict) -> None:
    """Give pytest-benchmark one sample per measured request (from the HDR histogram)."""
    from axon.records import stats

    # Private API (pytest-benchmark is pinned to 5.x; tests/test_pytest_plugin.py covers it):
    # a stats object fed sample by sample, and _mode so it knows the fixture was used.
    benchmark._mode = "axon_bench(...)"
    bench_stats = benchmark._make_stats(1)
    values, counts = stats.histogram_values_seconds(stats.decode(record["histogram"]))
    for value, count in zip(values, counts):
        for _ in range(count):
            bench_stats.update(value)
    benchmark.extra_info["axon"] = record


@pytest.fixture(scope="session")
def axon_hosts(axon_settings):
    """The Dask hosts of --axon-dask (None without it); a bad scheduler stops the session at once."""
    if not axon_settings.dask:
        yield None
        return
    from axon.engines.hosts.dask import DaskHosts

    try:
        hosts = DaskHosts(axon_settings.dask, axon_settings.hosts)
    except AxonError as exc:
        pytest.exit(f"axon: error: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    with hosts:
        yield hosts


@pytest.fixture
def axon_bench(request, benchmark, axon_settings, axon_hosts, axon_servers, axon_artifacts, axon_budgets):
    """Run one case; returns axon's record. Fails when the run itself fails (its record is not passed) or on a broken budget."""
    from axon.case import Target, prepare, run_case
    from axon.engines.loadgen import LoadSpec
    from axon.engines.payloads import trained_feed
    from axon.names import served_name
    from axon.workload.feed import Feed

    def measure(model: str, batching: str, concurrency: int | None = None, rate: float | None = None, distribution: str = "constant", rows_per_request: int = 1) -> dict:
        name = served_name(model)
        path = {f"path:{p.name}": p for p in axon_settings.paths}.get(name)
        spec = LoadSpec(
            name,
            concurrency=concurrency,
            rate=rate,
            distribution=distribution,
            duration_s=axon_settings.duration_s,
            warmup_s=axon_settings.warmup_s,
            processes=axon_settings.processes,
            rows_per_request=rows_per_request,
            max_error_rate=1.0,  # errors are judged by the SLO budgets, with a readable message
            engine=axon_settings.engine,
        )
        server = axon_servers.get(batching)
        target = Target.of(server, batching)
        n = axon_settings.repeat
        if path is not None:
            # A trigger path: its events on the event engine, each model fed as `axon bench --path` feeds it.
            from axon.case import run_path
            from axon.engines.model_choice import path_feeds

            try:
                feeds, references, _, _ = path_feeds(path, axon_artifacts)
                runs = [run_path(path, spec, target, feeds, references, {"name": f"trigger path {path.name}"}, client_bound_cores=axon_settings.client_bound_cores,
                                 repeat=(i, n) if n > 1 else None) for i in range(n)]
            except AxonError as exc:
                pytest.fail(str(exc), pytrace=False)
            return _judge(request, benchmark, runs, axon_budgets)
        try:
            case = prepare(spec, server.endpoints.metrics is not None, server.endpoints.tls, OPTIONS, axon_hosts)
        except AxonError as exc:
            pytest.fail(str(exc), pytrace=False)
        user = {m.name: m for m in axon_settings.onnx}.get(name)
        if user is not None:
            # The user's model: inputs generated from its signature, checked against its own file.
            if not user.signature.batched and batching == "on":
                pytest.skip(f"model {name!r} has no batch axis: Triton cannot batch it (its batching-off case measures it)")
            feed, reference = Feed(shapes=dict(axon_settings.shapes), signature=user.signature), user.path
            dataset = {"name": f"user model {user.path}", "payload_rows": "generated"}
        else:
            feed, dataset = trained_feed(axon_artifacts, name, option="--axon-artifacts")
            reference = axon_artifacts / "models" / name / "model.onnx"
            on_the_fly = getattr(request.config, "_axon_on_the_fly", None)
            if on_the_fly:
                dataset = {**dataset, "notice": on_the_fly}
        runs = [
            run_case(case, target, feed, reference, dataset, client_bound_cores=axon_settings.client_bound_cores, repeat=(i, n) if n > 1 else None)
            for i in range(n)
        ]
        return _judge(request, benchmark, runs, axon_budgets)

    return measure


def _judge(request, benchmark, runs: list[dict], budgets) -> dict:
    """One case's verdict: the run's own, then the budgets; the terminal line and pytest's failure."""
    record = repeats.pool(runs)
    feed_benchmark(benchmark, record)
    problems = run_verdict(record) + slo.violations(record, budgets)
    label = slo.case_label(record)
    notice = record["engine"].get("notice")
    if notice:
        request.config._axon_notes.append(f"{notice} ({label})")
    if record["client"]["client_bound"]:
        cores = max(record["client"]["cores_per_process"])
        note = f"client-bound: a load-generator process used {cores:.2f} cores ({label}); the client, not the server, may be the limit"
        request.config._axon_notes.append(note)
        warnings.warn(ClientBoundWarning(note), stacklevel=2)
        problems = [f"{p} [client-bound run]" for p in problems]
    if not slo.covered(record, budgets):
        request.config._axon_notes.append(f"no SLO budget covers {label}; recorded only")
    request.config._axon_cases.append(CaseLine.of(request.node.name, runs, record, problems))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return record


def run_verdict(record: dict) -> list[str]:
    """The run's own verdict, as `axon bench` gives it: why the record is not passed.

    pytest must fail what axon fails: an unverified native run, a client that fell behind its
    schedule, due requests the client never sent, an incomplete run. These come first, so the
    terminal line names the run's own verdict before any SLO budget.
    """
    problems: list[str] = []
    if not record["complete"]:
        problems.append(f"run incomplete: {record['incomplete_reason']}")
    if not record["passed"]:
        problems.extend(record["verdicts"])
    not_sent = (record.get("schedule") or {}).get("not_sent")
    if not_sent:
        # pytest leaves the error rate to the SLO budgets, but shed load is the client's failure:
        # the offered rate was never applied, whatever the budgets say.
        problems.append(f"{not_sent} due requests not sent (the client's in-flight bound)")
    if record["requests"]["ok"] == 0:
        problems.append(f"no successful request ({record['requests']['failures']})")
    return list(dict.fromkeys(problems))


@dataclass(frozen=True)
class CaseLine:
    """What the terminal says of one case: the real throughput, not pytest-benchmark's OPS."""

    name: str
    throughput: str
    p50: str
    p99: str
    engine: str
    client_bound: bool
    verdict: str

    @classmethod
    def of(cls, name: str, runs: list[dict], record: dict, problems: list[str]) -> CaseLine:
        spread = repeats.summarise(runs)
        return cls(
            name,
            spread["throughput_rps"].format(),
            spread["p50_ms"].format(".2f"),
            spread["p99_ms"].format(".2f"),
            record["engine"]["name"],
            record["client"]["client_bound"],
            ("ok" if record["correctness"]["enabled"] else "unchecked") if not problems else "FAILED: " + problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
        )


def _gate_power(config) -> list[str]:
    """When pytest-benchmark gates (--benchmark-compare-fail), what its runs could tell from noise."""
    session = getattr(config, "_benchmarksession", None)
    checks = getattr(session, "compare_fail", None) or []
    mappings = getattr(session, "compared_mapping", None) or {}
    if not checks or not mappings:
        return []
    from axon.verdicts import benchmark_gate

    saved = {name: (bench.get("extra_info") or {}).get("axon") for mapping in mappings.values() for name, bench in mapping.items()}
    now = {bench.fullname: bench.extra_info.get("axon") for bench in session.benchmarks if bench}
    return benchmark_gate.power_lines([check.field for check in checks], now, saved)


@pytest.hookimpl(tryfirst=True)  # pytest-benchmark's summary raises on a regression: say this before it
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    cases = getattr(config, "_axon_cases", [])
    notes = getattr(config, "_axon_notes", [])
    power = _gate_power(config)
    if not cases and not notes and not power:
        return
    terminalreporter.section("axon")
    if cases:
        # pytest-benchmark's OPS column is 1 / mean request latency, not throughput: say the real one.
        repeat = config._axon_settings.repeat
        over = f" (median [min-max] over {repeat} repeats)" if repeat > 1 else ""
        terminalreporter.write_line(f"{'case':<48} {'req/s':>22} {'p50 ms':>20} {'p99 ms':>20} {'engine':>6}  verdict{over}")
        for c in cases:
            flag = " [client-bound]" if c.client_bound else ""
            terminalreporter.write_line(f"{c.name[:48]:<48} {c.throughput:>22} {c.p50:>20} {c.p99:>20} {c.engine:>6}  {c.verdict}{flag}")
        bound = sum(c.client_bound for c in cases)
        failing = sum(c.verdict.startswith("FAILED") for c in cases)
        terminalreporter.write_line(f"{len(cases)} case(s): {failing} failing; client-bound: {bound} of {len(cases)} cases")
    for note in notes:
        terminalreporter.write_line(note)
    for line in power:
        terminalreporter.write_line(line)
