"""pytest-docker's glue: its fixtures as axon needs them, and a DockerServer whose compose up and down are pytest-docker's."""

from __future__ import annotations

import pytest

from axon.serving import backends


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(DockerFixtures(), "axon-docker-fixtures")  # why at configure time: see DockerFixtures


class PytestDockerServer(backends.DockerServer):
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
    pytestconfig._axon_notes.append(
        f"--triton=docker ran the {variant} image {image} ({why}); container logs in {axon_settings.log_dir}"
    )
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
