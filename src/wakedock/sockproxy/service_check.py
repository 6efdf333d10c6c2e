"""Is a Swarm `services/create` or `services/{id}/update` body one WakeDock would send?

The task's container spec is judged like an Engine create (`create_check.py`: the launch policy
over capabilities, mounts and networks, plus the hardening WakeDock always sets). What Swarm adds
is refused unless WakeDock uses it: published ports (Swarm publishes on every interface),
plugin tasks, job modes, and privilege settings other than no-new-privileges (seccomp, AppArmor
and SELinux left at the engine's confinement).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wakedock.runtime.hardening import volume_name
from wakedock.services.policy import PolicySettings
from wakedock.sockproxy.create_check import hardening_problems, is_empty, judge, label_problems

# ContainerSpec keys `runtime/swarm_spec.py` sends, and those Swarm fills in when it answers an
# inspect (an update sends back the current spec, docker-py's `fetch_current_spec`).
_CONTAINER_KEYS = frozenset(
    {
        "Image",
        "Args",
        "Env",
        "Labels",
        "Mounts",
        "ReadOnly",
        "CapabilityDrop",
        "CapabilityAdd",
        "Healthcheck",
        "Init",
        "StopSignal",
        "StopGracePeriod",
        "Privileges",
        "Isolation",
        "DNSConfig",
    }
)
_TASK_KEYS = frozenset(
    {
        "ContainerSpec",
        "Resources",
        "RestartPolicy",
        "Placement",
        "ForceUpdate",
        "Networks",
        "Runtime",
    }
)
_SERVICE_KEYS = frozenset(
    {
        "Name",
        "Labels",
        "TaskTemplate",
        "Mode",
        "UpdateConfig",
        "RollbackConfig",
        "EndpointSpec",
        "Networks",
    }
)


def _unused(where: str, spec: Mapping[str, Any], allowed: frozenset[str]) -> list[str]:
    return [
        f"{where}.{key}: not a setting WakeDock uses"
        for key, value in spec.items()
        if key not in allowed and not is_empty(value)
    ]


def _mounts(container: Mapping[str, Any], prefix: str) -> tuple[list[Any], list[str], list[str]]:
    volumes: list[Any] = []
    tmpfs: list[str] = []
    problems: list[str] = []
    for index, mount in enumerate(container.get("Mounts") or []):
        if not isinstance(mount, Mapping):
            problems.append(f"Mounts[{index}]: malformed")
            continue
        kind, target = mount.get("Type", "volume"), str(mount.get("Target", ""))
        source = str(mount.get("Source") or "")
        if kind == "bind":
            volumes.append({"source": source, "target": target})
        elif kind == "volume" and is_empty(mount.get("VolumeOptions")):
            if not source.startswith(prefix):
                problems.append(f"Mounts[{index}]: a volume of another service or installation")
            volumes.append({"name": source, "target": target})
        elif kind == "tmpfs":
            tmpfs.append(target)
        else:
            problems.append(f"Mounts[{index}]: only plain volume, bind and tmpfs mounts")
    return volumes, tmpfs, problems


def _privileges(container: Mapping[str, Any]) -> list[str]:
    privileges = container.get("Privileges") or {}
    if not isinstance(privileges, Mapping):
        return ["Privileges: malformed"]
    return [
        f"Privileges.{key}: only NoNewPrivileges is allowed (no unconfined profile)"
        for key, value in privileges.items()
        if key != "NoNewPrivileges" and not is_empty(value)
    ]


def service_problems(
    body: Any, installation: str, policy: PolicySettings, networks: list[str]
) -> list[str]:
    """Every reason to refuse this service spec. `networks`: the names of the networks its
    tasks join (the caller resolves ids through the engine)."""
    if not isinstance(body, Mapping):
        return ["body: a JSON object is required"]
    problems, service = label_problems(body.get("Labels"), installation)
    if service is None:
        return problems
    problems += _unused("Spec", body, _SERVICE_KEYS)
    mode = body.get("Mode") or {}
    if not isinstance(mode, Mapping) or set(mode) - {"Replicated"}:
        problems.append("Mode: only a replicated service")
    if not is_empty((body.get("EndpointSpec") or {}).get("Ports")):
        problems.append("EndpointSpec.Ports: Swarm would publish on every interface")
    task = body.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") if isinstance(task, Mapping) else None
    if not isinstance(container, Mapping):
        return [*problems, "TaskTemplate.ContainerSpec: required"]
    problems += _unused("TaskTemplate", task, _TASK_KEYS)
    problems += _unused("ContainerSpec", container, _CONTAINER_KEYS)
    if str(task.get("Runtime") or "container") != "container":
        problems.append("TaskTemplate.Runtime: only container tasks (no plugins)")
    if str(container.get("Isolation") or "default") != "default":
        problems.append("ContainerSpec.Isolation: only the default isolation")
    problems += _privileges(container)
    problems += hardening_problems(container.get("CapabilityDrop") or [], None)
    volumes, tmpfs, mount_problems = _mounts(container, volume_name(installation, service, ""))
    problems += mount_problems
    knobs = {
        "cap_add": [str(cap) for cap in container.get("CapabilityAdd") or []],
        "volumes": volumes,
        "tmpfs": tmpfs,
    }
    problems += judge(knobs, policy)
    for network in networks:
        problems += judge({"network_mode": network}, policy)
    return problems


def network_refs(body: Any) -> list[str]:
    """The networks (names or ids) a service body attaches its tasks to."""
    if not isinstance(body, Mapping):
        return []
    task = body.get("TaskTemplate") or {}
    listed = list((task.get("Networks") if isinstance(task, Mapping) else None) or [])
    listed += list(body.get("Networks") or [])
    return [str(n.get("Target", "")) if isinstance(n, Mapping) else str(n) for n in listed]
