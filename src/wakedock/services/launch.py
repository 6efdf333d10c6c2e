"""From a service spec to the runtime's `Launch` (S6.2): the one way a spec reaches the engine.

`launch_of` runs the launch policy again (defence in depth: whatever path leads to a launch, an
unchecked spec cannot be created), keeps only allowlisted capabilities, refuses secret references
left unresolved, and turns the readiness probe into the engine's healthcheck.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from wakedock.config import DockerSettings
from wakedock.runtime.launch import (
    Healthcheck,
    Launch,
    Mount,
    MountKind,
    Namespaces,
    PublishedPort,
    Resources,
    Transport,
)
from wakedock.services.policy import PolicySettings, violations
from wakedock.services.spec import (
    BindMount,
    HealthcheckProbe,
    HttpProbe,
    NamedVolume,
    ServiceSpec,
    TcpProbe,
    parse_secret_ref,
)

# The healthcheck runs inside the container: this is the container's own loopback.
CONTAINER_LOOPBACK = "127.0.0.1"


def policy_settings(docker: DockerSettings) -> PolicySettings:
    """What the admin configured beyond the hardened defaults."""
    return PolicySettings(
        cap_allowlist=frozenset(docker.cap_allowlist),
        bind_mount_allowlist=tuple(docker.bind_mount_allowlist),
        allow_privileged_host_ports=docker.allow_privileged_host_ports,
        network=docker.network,
    )


def healthcheck(spec: ServiceSpec) -> Healthcheck:
    """The engine healthcheck derived from the spec's readiness probe."""
    probe = spec.readiness
    test: list[str]
    if isinstance(probe, HealthcheckProbe):
        test = list(probe.test)
    elif isinstance(probe, HttpProbe):
        # The path comes from a user: quoted, a ';' or '$(...)' in it stays part of the URL.
        url = f"http://{CONTAINER_LOOPBACK}:{probe.port}{probe.path}"
        test = ["CMD-SHELL", f"wget -q -O /dev/null {shlex.quote(url)} || exit 1"]
    elif isinstance(probe, TcpProbe):
        test = ["CMD-SHELL", f"nc -z {CONTAINER_LOOPBACK} {int(probe.port)} || exit 1"]
    else:  # pragma: no cover - the union is closed; this keeps a new probe type from slipping by
        raise ValueError(f"unknown readiness probe: {type(probe).__name__}")
    return Healthcheck(tuple(test), probe.interval_s, probe.timeout_s, probe.retries)


def _environment(spec: ServiceSpec, resolved: Mapping[str, str] | None) -> dict[str, str]:
    environment = dict(resolved if resolved is not None else spec.env)
    unresolved = sorted(k for k, v in environment.items() if parse_secret_ref(v) is not None)
    if unresolved:
        # Launching with the literal "secret:..." text would start a misconfigured service quietly.
        raise ValueError(f"secret references not resolved: {', '.join(unresolved)}")
    return environment


def _mount(volume: NamedVolume | BindMount) -> Mount:
    if isinstance(volume, BindMount):
        return Mount(MountKind.BIND, volume.source, volume.target, volume.read_only)
    return Mount(MountKind.VOLUME, volume.name, volume.target, volume.read_only)


def launch_of(
    spec: ServiceSpec,
    environment: Mapping[str, str] | None = None,
    policy: PolicySettings | None = None,
) -> Launch:
    """What the runtime creates for `spec`.

    `environment`, when given, replaces `spec.env` (the caller resolves secret references
    first). Raises ValueError when the policy engine would refuse the spec.
    """
    policy = policy or PolicySettings()
    problems = violations(spec, policy)
    if problems:
        listed = "; ".join(f"{v.field}: {v.message}" for v in problems)
        raise ValueError(f"spec violates the launch policy: {listed}")
    return Launch(
        service=spec.name,
        image=spec.image,
        command=tuple(spec.command) if spec.command is not None else None,
        environment=_environment(spec, environment),
        healthcheck=healthcheck(spec),
        resources=Resources(spec.limits.memory_mb, spec.limits.cpus, spec.limits.pids),
        ports=tuple(
            PublishedPort(p.container_port, p.host_port, Transport(p.protocol)) for p in spec.ports
        ),
        mounts=tuple(_mount(volume) for volume in spec.volumes),
        tmpfs=tuple(spec.tmpfs),
        cap_add=tuple(cap for cap in spec.cap_add if cap in policy.cap_allowlist),
        read_only_root=spec.read_only_root,
        stop_signal=spec.stop_signal,
        stop_timeout_s=spec.stop_timeout_s,
        namespaces=Namespaces(spec.network_mode, spec.pid_mode, spec.ipc_mode, spec.uts_mode),
    )
