"""The configured ContainerRuntime: Docker Engine (default) or Docker Swarm."""

from __future__ import annotations

from wakedock.config import DockerSettings
from wakedock.runtime.base import ContainerRuntime


def make_runtime(docker: DockerSettings) -> ContainerRuntime:
    """Build the runtime; nothing connects to the daemon until the first call."""
    if docker.runtime == "swarm":
        from wakedock.runtime.docker_swarm import DockerSwarmRuntime

        return DockerSwarmRuntime(base_url=docker.url, installation=docker.installation)
    from wakedock.runtime.docker_engine import DockerEngineRuntime

    return DockerEngineRuntime(
        base_url=docker.url, installation=docker.installation, network=docker.network
    )
