"""``axon_bench``: one case run and judged (the run's own verdict, then the SLO budgets), fed to pytest-benchmark; the model matrix."""

from __future__ import annotations

import warnings

import pytest

from axon.errors import AxonError
from axon.pytest_plugin.options import OPTIONS
from axon.pytest_plugin.summary import CaseLine
from axon.records import repeats
from axon.verdicts import slo


class ClientBoundWarning(UserWarning):
    """The client, not the server, may have limited this run."""


MATRIX_MODELS = ("v1", "v2")


def pytest_generate_tests(metafunc) -> None:
    """A benchmark marked ``axon_models`` runs over v1, v2 and every --axon-onnx model (its ``model`` argument)."""
    if metafunc.definition.get_closest_marker("axon_models") is not None and "model" in metafunc.fixturenames:
        settings = metafunc.config._axon_settings
        metafunc.parametrize(
            "model", (*MATRIX_MODELS, *(m.name for m in settings.onnx), *(f"path:{p.name}" for p in settings.paths))
        )


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

    def measure(
        model: str,
        batching: str,
        concurrency: int | None = None,
        rate: float | None = None,
        distribution: str = "constant",
        rows_per_request: int = 1,
    ) -> dict:
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
                runs = [
                    run_path(
                        path,
                        spec,
                        target,
                        feeds,
                        references,
                        {"name": f"trigger path {path.name}"},
                        client_bound_cores=axon_settings.client_bound_cores,
                        repeat=(i, n) if n > 1 else None,
                    )
                    for i in range(n)
                ]
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
            run_case(
                case,
                target,
                feed,
                reference,
                dataset,
                client_bound_cores=axon_settings.client_bound_cores,
                repeat=(i, n) if n > 1 else None,
            )
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
