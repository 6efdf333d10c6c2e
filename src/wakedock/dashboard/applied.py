"""What the engine says was applied to a service's container: its hardening (capabilities,
read-only root, limits, user, published ports) and the CIS Docker Benchmark checks
(`runtime/cis.py`, what `wakedock cis-check` reports), both read from `docker inspect`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wakedock.runtime.cis import CheckResult, check_container
from wakedock.runtime.hardening import LOOPBACK


@dataclass(frozen=True)
class Hardening:
    """The hardening of one container, as the engine runs it."""

    container: str
    user: str
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    read_only_root: bool
    no_new_privileges: bool
    privileged: bool
    init: bool
    memory_mib: int | None
    cpus: float | None
    pids: int | None
    # "127.0.0.1:49153 -> 8000/tcp" (or the configured binding while stopped).
    ports: tuple[str, ...]
    ports_on_loopback: bool


@dataclass(frozen=True)
class Applied:
    hardening: Hardening
    checks: list[CheckResult]

    @property
    def failed(self) -> int:
        """CIS items failed (advisories are not counted)."""
        return sum(1 for c in self.checks if not c.passed and not c.advisory)


def _caps(values: Any) -> tuple[str, ...]:
    return tuple(str(v).upper().removeprefix("CAP_") for v in values or ())


def _ports(attrs: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of every published port: where the running
    container is bound, else the binding it will get."""
    live = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    configured = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    found = []
    for port, bindings in (live or configured).items():
        for binding in bindings or ():
            found.append(
                (str(binding.get("HostIp") or ""), str(binding.get("HostPort") or ""), port)
            )
    return found


def applied(attrs: Mapping[str, Any]) -> Applied:
    """The hardening and the CIS results of one container's `docker inspect`."""
    host = attrs.get("HostConfig") or {}
    config = attrs.get("Config") or {}
    security = [str(o) for o in host.get("SecurityOpt") or ()]
    ports = _ports(attrs)
    memory = int(host.get("Memory") or 0)
    nano_cpus = int(host.get("NanoCpus") or 0)
    pids = int(host.get("PidsLimit") or 0)
    hardening = Hardening(
        container=str(attrs.get("Name") or "").lstrip("/"),
        user=str(config.get("User") or ""),
        cap_drop=_caps(host.get("CapDrop")),
        cap_add=_caps(host.get("CapAdd")),
        read_only_root=bool(host.get("ReadonlyRootfs")),
        no_new_privileges=any(o.startswith("no-new-privileges") for o in security),
        privileged=bool(host.get("Privileged")),
        init=bool(host.get("Init")),
        memory_mib=memory // (1024 * 1024) if memory > 0 else None,
        cpus=nano_cpus / 1e9 if nano_cpus > 0 else None,
        pids=pids if pids > 0 else None,
        ports=tuple(f"{ip or '*'}:{port or '?'} \u2192 {inner}" for ip, port, inner in ports),
        ports_on_loopback=all(ip == LOOPBACK for ip, _port, _inner in ports),
    )
    return Applied(hardening, check_container(attrs))
