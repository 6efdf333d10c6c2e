"""Is an Engine `POST /containers/create` one WakeDock itself would send? (the launch policy)

The engine's create body is mapped onto the knobs of a `ServiceSpec` (privileged, capabilities,
namespaces, devices, mounts, tmpfs, ports) and judged by the same `policy.violations` the
services API runs. What the hardening always sets (`runtime/hardening.py`: all capabilities
dropped, no-new-privileges, ports on loopback) must be there, the labels must be this
installation's, and any other HostConfig setting WakeDock never sends is refused by name.
Reasons name the field, never the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from wakedock.runtime.hardening import LOOPBACK, container_name, volume_name
from wakedock.runtime.labels import MANAGED_LABEL, SERVICE_LABEL
from wakedock.services.policy import PolicySettings, violations
from wakedock.services.spec import ServiceSpec

# The HostConfig keys `runtime/engine_spec.py` sends; each one is judged below.
_HOST_KEYS = frozenset(
    {
        "Binds",
        "Mounts",
        "PortBindings",
        "CapDrop",
        "CapAdd",
        "SecurityOpt",
        "ReadonlyRootfs",
        "Tmpfs",
        "Memory",
        "MemorySwap",
        "NanoCpus",
        "PidsLimit",
        "RestartPolicy",
        "Privileged",
        "Init",
        "NetworkMode",
        "PidMode",
        "IpcMode",
        "UTSMode",
        "Devices",
    }
)
NO_NEW_PRIVILEGES = frozenset(
    {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
)
# Namespace modes that are the engine's private default.
_PRIVATE = frozenset({"", "default", "private", "shareable", "none", "bridge"})


def is_empty(value: Any) -> bool:
    """A zero value, as clients send for settings they leave at the engine's default."""
    if isinstance(value, Mapping):
        return all(is_empty(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(is_empty(item) for item in value)
    return not value


def label_problems(labels: Any, installation: str) -> tuple[list[str], str | None]:
    """WakeDock creates only what carries `wakedock.managed=<installation>` and a service name."""
    if not isinstance(labels, Mapping):
        return ["Labels: WakeDock's labels are missing"], None
    service = labels.get(SERVICE_LABEL)
    if labels.get(MANAGED_LABEL) != installation or not isinstance(service, str) or not service:
        return [
            "Labels: this installation's wakedock.managed and wakedock.service are required"
        ], None
    return [], service


def _mode(value: Any) -> str | None:
    text = str(value or "")
    return None if text in _PRIVATE else text


def _mounts(host: Mapping[str, Any], prefix: str) -> tuple[list[Any], list[str], list[str]]:
    """(volumes for the policy, tmpfs targets, problems) from Binds, Mounts and Tmpfs."""
    volumes: list[Any] = []
    tmpfs = [str(path) for path in (host.get("Tmpfs") or {})]
    problems: list[str] = []
    for bind in host.get("Binds") or []:
        source, _, rest = str(bind).partition(":")
        target, _, mode = rest.partition(":")
        if source.startswith("/"):
            volumes.append(
                {"source": source, "target": target, "read_only": "ro" in mode.split(",")}
            )
        else:
            volumes.append({"name": source, "target": target, "read_only": "ro" in mode.split(",")})
    for index, mount in enumerate(host.get("Mounts") or []):
        kind = mount.get("Type", "volume") if isinstance(mount, Mapping) else None
        target = str(mount.get("Target", "")) if isinstance(mount, Mapping) else ""
        if kind == "bind":
            volumes.append({"source": str(mount.get("Source", "")), "target": target})
        elif kind == "volume" and is_empty(mount.get("VolumeOptions")):
            volumes.append({"name": str(mount.get("Source", "")), "target": target})
        elif kind == "tmpfs":
            tmpfs.append(target)
        else:
            problems.append(f"HostConfig.Mounts[{index}]: only plain volume, bind and tmpfs mounts")
    for index, volume in enumerate(volumes):
        # Named as the hardening names them: a service cannot mount another one's volume.
        if "name" in volume and not str(volume["name"]).startswith(prefix):
            problems.append(f"volumes[{index}]: a volume of another service or installation")
    return volumes, tmpfs, problems


def _device(device: Any) -> str:
    return str(device.get("PathOnHost") or "device") if isinstance(device, Mapping) else "device"


def _ports(host: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    ports: list[dict[str, Any]] = []
    problems: list[str] = []
    for key, bindings in (host.get("PortBindings") or {}).items():
        port, _, proto = str(key).partition("/")
        for binding in bindings or []:
            if not isinstance(binding, Mapping) or binding.get("HostIp") != LOOPBACK:
                problems.append("HostConfig.PortBindings: ports are published on 127.0.0.1 only")
                continue
            host_port = binding.get("HostPort") or None
            ports.append(
                {
                    "container_port": int(port) if port.isdigit() else 0,
                    "host_port": int(host_port) if host_port else None,
                    "protocol": proto or "tcp",
                }
            )
    return ports, problems


def judge(knobs: Mapping[str, Any], policy: PolicySettings) -> list[str]:
    """The launch policy's verdict on the spec knobs gathered from an engine body."""
    try:
        spec = ServiceSpec.model_validate(
            {
                "name": "checked",
                "image": "checked",
                "readiness": {"type": "tcp", "port": 1},
                **knobs,
            }
        )
    except ValidationError as exc:
        # Field locations only: pydantic's messages may quote the refused input.
        return [f"{'.'.join(map(str, e['loc'][:2]))}: malformed" for e in exc.errors()]
    return [f"{v.field}: {v.message}" for v in violations(spec, policy)]


def hardening_problems(cap_drop: Iterable[Any], security: Iterable[Any] | None) -> list[str]:
    """What `runtime/hardening.py` puts on every container, required here too."""
    problems: list[str] = []
    if "ALL" not in {str(cap).upper() for cap in cap_drop}:
        problems.append("CapDrop: every capability must be dropped (ALL)")
    if security is not None:
        options = [str(option) for option in security]
        if any(option not in NO_NEW_PRIVILEGES for option in options):
            problems.append("SecurityOpt: only no-new-privileges is allowed (no unconfined)")
        if not any(option in NO_NEW_PRIVILEGES for option in options):
            problems.append("SecurityOpt: no-new-privileges is required")
    return problems


def network_problems(
    body: Mapping[str, Any], host: Mapping[str, Any], network: str | None
) -> list[str]:
    """The networks a container joins. An endpoint may carry no setting (an alias could take
    over another container's name on a shared network; a fixed address or link is not
    WakeDock's either). With `--network` (docker.network), the container joins that network
    or none at all: Docker's default bridge, another network, `host` or `container:<id>`
    would put it where WakeDock does not reach it, or beside what it must not reach."""
    problems: list[str] = []
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(endpoints, Mapping):
        return ["NetworkingConfig.EndpointsConfig: a JSON object is required"]
    if not all(is_empty(settings) for settings in endpoints.values()):
        problems.append(
            "NetworkingConfig.EndpointsConfig: aliases, addresses and links are not settings "
            "WakeDock uses"
        )
    if network is None:
        return problems
    if str(host.get("NetworkMode") or "") not in (network, "none"):
        problems.append("HostConfig.NetworkMode: only the network --network names, or none")
    if any(str(name) != network for name in endpoints):
        problems.append("NetworkingConfig.EndpointsConfig: only the network --network names")
    return problems


def container_create_problems(
    body: Any, name: str | None, installation: str, policy: PolicySettings
) -> list[str]:
    """Every reason to refuse this create body; empty when WakeDock could have sent it."""
    if not isinstance(body, Mapping):
        return ["body: a JSON object is required"]
    problems, service = label_problems(body.get("Labels"), installation)
    if service is None:
        return problems
    if name is not None and name != container_name(installation, service):
        problems.append("name: not the name WakeDock gives this service's container")
    host = body.get("HostConfig") or {}
    if not isinstance(host, Mapping):
        return [*problems, "HostConfig: a JSON object is required"]
    problems += [
        f"HostConfig.{key}: not a setting WakeDock uses"
        for key, value in host.items()
        if key not in _HOST_KEYS and not is_empty(value)
    ]
    problems += hardening_problems(host.get("CapDrop") or [], host.get("SecurityOpt") or [])
    # The hardening's limits (CIS 5.10, 5.28): one container cannot starve the host.
    problems += [
        f"HostConfig.{key}: a limit is required"
        for key in ("Memory", "PidsLimit")
        if not isinstance(host.get(key), int) or host[key] <= 0
    ]
    volumes, tmpfs, mount_problems = _mounts(host, volume_name(installation, service, ""))
    ports, port_problems = _ports(host)
    networks = list((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
    knobs: dict[str, Any] = {
        "privileged": bool(host.get("Privileged")),
        "cap_add": [str(cap) for cap in host.get("CapAdd") or []],
        "network_mode": _mode(host.get("NetworkMode")),
        "pid_mode": _mode(host.get("PidMode")),
        "ipc_mode": _mode(host.get("IpcMode")),
        "uts_mode": _mode(host.get("UTSMode")),
        "devices": [_device(device) for device in host.get("Devices") or []],
        "volumes": volumes,
        "tmpfs": tmpfs,
        "ports": ports,
        # A writable root is an admin's per-service grant the proxy cannot see: not judged here.
        "read_only_root": True,
    }
    problems += mount_problems + port_problems + judge(knobs, policy)
    problems += network_problems(body, host, policy.network)
    for network in networks:
        problems += judge({"network_mode": _mode(network)}, policy)
    return problems
