"""Is a Swarm `services/create` or `services/{id}/update` body one WakeDock would send?

The task's container spec is judged like an Engine create (`create_check.py`: the launch policy
over capabilities, mounts and networks, plus the hardening WakeDock always sets). What Swarm adds
is refused unless WakeDock uses it: published ports (Swarm publishes on every interface),
plugin tasks, job modes, and privilege settings other than no-new-privileges (seccomp, AppArmor
and SELinux left at the engine's confinement).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from wakedock.runtime.hardening import volume_name
from wakedock.services.policy import PolicySettings
from wakedock.sockproxy.body import parse_body
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


def scale_only_problems(body: Any, current: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why this update of an owner's opted-in service (`wakedock.enable=true`) is more than a
    scale (`Mode.Replicated.Replicas` 0 or 1) or a reschedule (`TaskTemplate.ForceUpdate`).

    WakeDock starts and stops the services their owners made, never changes them: the update
    must send back the current spec unchanged otherwise (`current`: the engine's inspect, as
    given and with the engine's defaults filled in; either is accepted), so the proxy lets
    through nothing the owner did not deploy. A key spelled otherwise than the engine spells it
    is a difference too."""
    if not isinstance(body, Mapping):
        return ["body: a JSON object is required"]
    problems: list[str] = []
    mode = body.get("Mode")
    replicas = (mode.get("Replicated") or {}).get("Replicas") if isinstance(mode, Mapping) else None
    if not isinstance(mode, Mapping) or set(mode) != {"Replicated"} or replicas not in (0, 1):
        problems.append("Mode: only a replicated service scaled to 0 or 1")
    force = (body.get("TaskTemplate") or {}).get("ForceUpdate", 0)
    if not isinstance(force, int) or isinstance(force, bool):
        problems.append("TaskTemplate.ForceUpdate: a number is required")
    # The body's field names were folded to the checks' spellings (body.py): the spec's too.
    folded = [parse_body(json.dumps(spec).encode()) for spec in current]
    changed = min((_changed(body, spec) for spec in folded), key=len, default=["Spec"])
    return problems + [f"{key}: an opted-in service is scaled, never changed" for key in changed]


def _changed(body: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """The top-level keys (and `TaskTemplate` but for `ForceUpdate`) that differ, `Mode` aside."""
    changed: list[str] = []
    for key in sorted(set(body) | set(spec)):
        sent, kept = body.get(key), spec.get(key)
        if key == "Mode":
            continue
        if key == "TaskTemplate" and isinstance(sent, Mapping) and isinstance(kept, Mapping):
            sent = {k: v for k, v in sent.items() if k != "ForceUpdate"}
            kept = {k: v for k, v in kept.items() if k != "ForceUpdate"}
        # A client leaves out the settings the service does not have (docker-py drops nulls).
        if sent != kept and not (is_empty(sent) and is_empty(kept)):
            changed.append(f"Spec.{key}")
    return changed
