"""The plugin's options, validated once at configure time into :class:`Settings`; its marks; the SLO budgets they name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from axon.errors import AxonError
from axon.serving import backends
from axon.verdicts import slo

BATCHING = ("on", "off")
# Messages from shared code name these options, not the CLI's.
OPTIONS = {"engine": "--axon-engine", "metrics_url": "--triton-metrics-url", "duration": "--axon-duration"}


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

    def user_models(self) -> list:
        """The user's own models (axon.offline.user_model.UserModel): --axon-onnx's, and those the trigger paths call by file."""
        from axon.offline.user_model import load

        users = list(self.onnx)
        for path in self.paths:
            files = {c.model: c.onnx for s in path.steps for c in s.calls if c.onnx is not None}
            users += load(list(files.values()), list(files)) if files else []
        return users


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("axon", "axon: Triton inference benchmarks")
    group.addoption(
        "--triton",
        choices=("embedded", "docker", "external"),
        default="embedded",
        help="which Triton to benchmark (default embedded)",
    )
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
    group.addoption(
        "--triton-log-dir",
        help="--triton=docker: where each container's log is saved (default: beside --benchmark-json, else ./results)",
    )
    group.addoption("--triton-metrics-url", help="--triton=external: Triton's Prometheus metrics URL")
    group.addoption(
        "--triton-batching",
        choices=BATCHING,
        default="on",
        help="--triton=external: the batching mode that server runs (default on)",
    )
    group.addoption(
        "--triton-tls", action="store_true", help="--triton=external: gRPC over TLS, the server's certificate verified"
    )
    group.addoption(
        "--triton-ca-file",
        help="--triton-tls: PEM file of the CA that signed the server's certificate (default: the system's CAs)",
    )
    group.addoption("--axon-duration", type=float, default=3.0, help="measurement window per case, seconds (default 3)")
    group.addoption("--axon-warmup", type=float, default=1.0, help="warm-up per case, seconds (default 1)")
    group.addoption("--axon-processes", default="auto", help="load-generator processes per case (default auto)")
    group.addoption(
        "--axon-client-bound-cores",
        type=float,
        default=0.8,
        help="flag a case client-bound above this share of a core per process",
    )
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
    group.addoption(
        "--axon-repeat", type=int, default=1, help="run each case this many times; the gate compares run-level values (default 1)"
    )
    group.addoption(
        "--axon-dask", metavar="ADDRESS", help="offer the load from the workers of this Dask scheduler (docs/many-hosts.md)"
    )
    group.addoption("--axon-hosts", type=int, help="with --axon-dask: how many workers offer load (default all)")
    group.addoption(
        "--axon-onnx",
        action="append",
        default=[],
        metavar="PATH",
        help="add your own ONNX model to the matrix (repeatable): served beside v1 and v2 from a repository axon writes, "
        "fed generated inputs, checked against onnxruntime; its name (the file's stem) selects it in SLO budgets",
    )
    group.addoption(
        "--axon-path",
        action="append",
        default=[],
        metavar="FILE.toml",
        help="add a trigger path to the matrix (repeatable): several models per event, "
        "steps in order; its event latency is judged (SLO: path = NAME, event_p50_ms, event_p99_ms)",
    )
    group.addoption(
        "--axon-shape",
        action="append",
        default=[],
        metavar="NAME:d1,d2",
        help="an --axon-onnx input's open dimensions, batch axis excluded (repeatable)",
    )
    group.addoption(
        "--axon-slo-file", help="TOML with [[slo]] budgets (default: [[tool.axon.slo]] in the rootdir's pyproject.toml)"
    )


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
            raise pytest.UsageError(
                f"--triton=docker: {reason}; pass --triton-skip-unavailable to skip the benchmark cases instead"
            )
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


@pytest.fixture(scope="session")
def axon_settings(pytestconfig) -> Settings:
    return pytestconfig._axon_settings


def _budgets(settings: Settings) -> list[slo.Budget]:
    if settings.slo_file is None:
        return []
    # An external server may serve any model, so only then are model names left unchecked.
    models = None if settings.backend == "external" else (*slo.KNOWN_MODELS, *(m.name for m in settings.user_models()))
    try:
        return slo.load_budgets(settings.slo_file, models=models)
    except AxonError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def axon_budgets(pytestconfig) -> list[slo.Budget]:
    return pytestconfig._axon_budgets
