"""The configured ContainerRuntime: Docker Engine (default) or Docker Swarm."""

from __future__ import annotations

from wakedock.config import DockerSettings
from wakedock.runtime.base import ContainerRuntime
from wakedock.services.policy import PolicySettings


def policy_settings(docker: DockerSettings) -> PolicySettings:
    return PolicySettings(
        cap_allowlist=frozenset(docker.cap_allowlist),
        bind_mount_allowlist=tuple(docker.bind_mount_allowlist),
        allow_privileged_host_ports=docker.allow_privileged_host_ports,
    )


def make_runtime(docker: DockerSettings) -> ContainerRuntime:
    """Build the runtime; nothing connects to the daemon until the first call."""
    policy = policy_settings(docker)
    if docker.runtime == "swarm":
        from wakedock.runtime.docker_swarm import DockerSwarmRuntime

        return DockerSwarmRuntime(
            base_url=docker.url, installation=docker.installation, policy=policy
        )
    from wakedock.runtime.docker_engine import DockerEngineRuntime

    return DockerEngineRuntime(base_url=docker.url, installation=docker.installation, policy=policy)
