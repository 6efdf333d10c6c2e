"""Hardened launch settings (S6.2, CIS Docker Benchmark section 5) for every WakeDock container.

`container_create_kwargs` is pure: it turns a `ServiceSpec` into keyword arguments for docker-py 7's
`client.containers.create(...)` (plus `stop_timeout`, which only docker-py's low-level
`create_container` takes: see `runtime/docker_engine.py`), so the hardening can be checked without
an engine, and the engine integration tests then prove it with `docker inspect` (and
`runtime/cis.py` names each CIS item).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from wakedock.services.policy import PolicySettings, violations
from wakedock.services.spec import (
    BindMount,
    HealthcheckProbe,
    HttpProbe,
    ServiceSpec,
    TcpProbe,
    parse_secret_ref,
)

MANAGED_LABEL = "wakedock.managed"
SERVICE_LABEL = "wakedock.service"
LOOPBACK = "127.0.0.1"
TMPFS_OPTIONS = "rw,noexec,nosuid,size=64m"
MAX_RESTARTS = 5
NANOS_PER_SECOND = 1_000_000_000


def _seconds(value: int) -> int:
    return value * NANOS_PER_SECOND


def healthcheck(spec: ServiceSpec) -> dict[str, Any]:
    """The Docker healthcheck derived from the spec's readiness probe (times in nanoseconds)."""
    probe = spec.readiness
    test: list[str]
    if isinstance(probe, HealthcheckProbe):
        test = list(probe.test)
    elif isinstance(probe, HttpProbe):
        # The path comes from a user: quoted, a ';' or '$(...)' in it stays part of the URL.
        url = f"http://{LOOPBACK}:{probe.port}{probe.path}"
        test = ["CMD-SHELL", f"wget -q -O /dev/null {shlex.quote(url)} || exit 1"]
    elif isinstance(probe, TcpProbe):
        test = ["CMD-SHELL", f"nc -z {LOOPBACK} {int(probe.port)} || exit 1"]
    else:  # pragma: no cover - the union is closed; this keeps a new probe type from slipping by
        raise ValueError(f"unknown readiness probe: {type(probe).__name__}")
    return {
        "test": test,
        "interval": _seconds(probe.interval_s),
        "timeout": _seconds(probe.timeout_s),
        "retries": probe.retries,
    }


def _environment(spec: ServiceSpec, resolved: Mapping[str, str] | None) -> dict[str, str]:
    environment = dict(resolved if resolved is not None else spec.env)
    unresolved = sorted(k for k, v in environment.items() if parse_secret_ref(v) is not None)
    if unresolved:
        # Launching with the literal "secret:..." text would start a misconfigured service quietly.
        raise ValueError(f"secret references not resolved: {', '.join(unresolved)}")
    return environment


def container_name(installation: str, service: str) -> str:
    """`<installation>-<service>`: apart from the operator's own containers and from another
    installation's on the same engine (the default installation gives `wakedock-<service>`)."""
    return f"{installation}-{service}"


def volume_name(installation: str, service: str, volume: str) -> str:
    """Prefixed so that one service cannot name (and so mount) another service's volume."""
    return f"{installation}_{service}_{volume}"


def _volumes(spec: ServiceSpec, installation: str) -> dict[str, dict[str, str]]:
    mounts: dict[str, dict[str, str]] = {}
    for volume in spec.volumes:
        if isinstance(volume, BindMount):
            key = volume.source
        else:
            key = volume_name(installation, spec.name, volume.name)
        if key in mounts:
            raise ValueError(f"{key} is mounted twice")
        mounts[key] = {"bind": volume.target, "mode": "ro" if volume.read_only else "rw"}
    return mounts


def container_create_kwargs(
    spec: ServiceSpec,
    *,
    managed_label_value: str,
    policy: PolicySettings | None = None,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for docker-py's `containers.create` that launch `spec` hardened.

    `environment`, when given, replaces `spec.env` (the caller resolves secret references first).
    Raises ValueError when the policy engine would refuse the spec, so no code path can launch an
    unchecked spec.
    """
    policy = policy or PolicySettings()
    problems = violations(spec, policy)
    if problems:
        listed = "; ".join(f"{v.field}: {v.message}" for v in problems)
        raise ValueError(f"spec violates the launch policy: {listed}")
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command) if spec.command is not None else None,
        "name": container_name(managed_label_value, spec.name),
        "environment": _environment(spec, environment),
        "labels": {MANAGED_LABEL: managed_label_value, SERVICE_LABEL: spec.name},
        # Published on loopback only: the WakeDock proxy is the sole way in (CIS 5.13).
        "ports": {f"{p.container_port}/{p.protocol}": (LOOPBACK, p.host_port) for p in spec.ports},
        "cap_drop": ["ALL"],
        "cap_add": [cap for cap in spec.cap_add if cap in policy.cap_allowlist],
        "security_opt": ["no-new-privileges:true"],
        "read_only": spec.read_only_root,
        "tmpfs": dict.fromkeys(spec.tmpfs, TMPFS_OPTIONS),
        "mem_limit": f"{spec.limits.memory_mb}m",
        # Equal to mem_limit: no swap on top, so the memory limit is the real ceiling.
        "memswap_limit": f"{spec.limits.memory_mb}m",
        "nano_cpus": round(spec.limits.cpus * NANOS_PER_SECOND),
        "pids_limit": spec.limits.pids,
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": MAX_RESTARTS},
        "privileged": False,
        "healthcheck": healthcheck(spec),
        "volumes": _volumes(spec, managed_label_value),
        # PID 1 gets no default signal handlers: an app that installs none (busybox httpd, most
        # shell scripts) would ignore SIGTERM and every stop would end in SIGKILL after the
        # timeout. The engine's init (tini) forwards the stop signal and reaps zombies.
        "init": True,
        "stop_timeout": spec.stop_timeout_s,
    }
    if spec.stop_signal is not None:
        kwargs["stop_signal"] = spec.stop_signal
    # Only modes the policy accepted reach here; anything else Docker itself rejects by name.
    modes = {
        "network_mode": spec.network_mode,
        "pid_mode": spec.pid_mode,
        "ipc_mode": spec.ipc_mode,
        "uts_mode": spec.uts_mode,
    }
    kwargs.update({key: mode for key, mode in modes.items() if mode is not None})
    return kwargs
