"""The models a session serves (trained, or small ones trained on the fly, plus the user's) and the pool of servers that serve them."""

from __future__ import annotations

from pathlib import Path

import pytest

from axon.pytest_plugin.containers import PytestDockerServer
from axon.pytest_plugin.options import Settings
from axon.serving import backends

ON_THE_FLY_ROWS = 20_000
ON_THE_FLY_EPOCHS = 2


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


class ServerPool:
    """One server per batching mode, started on first use, stopped at session end.

    embedded: axon starts both modes as needed. docker: one container per batching mode, each a
    compose project brought up and down through pytest-docker (see :class:`~axon.pytest_plugin.containers.PytestDockerServer`).
    external: the one server given, whose batching mode the user states.
    """

    def __init__(self, settings: Settings, artifacts: Path, request: pytest.FixtureRequest):
        self.settings, self.artifacts, self.request = settings, artifacts, request
        self.running: dict = {}

    def get(self, batching: str):
        from axon.errors import ServerError

        s = self.settings
        if s.backend == "external" and batching != s.external_batching:
            pytest.skip(
                f"this external server serves batching {s.external_batching}; run again with --triton-batching {batching} for this case"
            )
        if s.backend == "docker" and batching not in self.running:
            reason = backends.docker_unavailable_reason(s.docker_variant)
            if reason:  # only reached with --triton-skip-unavailable: without it the session refused to start
                pytest.skip(reason)
        if batching not in self.running:
            try:
                server = (
                    self._docker(batching)
                    if s.backend == "docker"
                    else backends.make_server(
                        s.backend,
                        batching=batching,
                        artifacts=self.artifacts,
                        url=s.url,
                        metrics_url=s.metrics_url,
                        tls=s.tls,
                        ca_file=s.ca_file,
                    )
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
        server = PytestDockerServer(
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


def _with_user_models(settings: Settings, artifacts: Path, into: Path) -> Path:
    """The repositories a server axon starts serves: the trained ones, plus the user's models beside them."""
    import shutil

    from axon.offline import user_model

    users = settings.user_models()
    if not users:
        return artifacts
    shutil.copytree(artifacts / "repositories", into / "repositories")
    return user_model.write_artifacts(list({m.name: m for m in users}.values()), into)


@pytest.fixture(scope="session")
def axon_servers(axon_settings, axon_artifacts, request, tmp_path_factory):
    served = (
        _with_user_models(axon_settings, axon_artifacts, tmp_path_factory.mktemp("axon-served"))
        if axon_settings.backend != "external"
        else axon_artifacts
    )
    servers = ServerPool(axon_settings, served, request)
    yield servers
    servers.stop()
