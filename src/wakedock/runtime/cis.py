"""CIS Docker Benchmark v1.6.0, section 5 (container runtime): the items `docker inspect` proves.

Numbering follows v1.6.0 (5.1 is "swarm mode not enabled", so the container items run 5.4-5.32;
docker-bench-security uses the same ids). Items that need a running shell (5.7 sshd), the host
(5.2 AppArmor availability, 5.3 SELinux) or operator practice (5.23/5.24 docker exec, 5.28 image
freshness, 5.30 docker0) are not judged here.

Beyond the benchmark, `ADVISORIES` report what WakeDock launches with for reliability (an init
process); a container without it is a WARN, never a FAIL: it is not a CIS item.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wakedock.runtime.hardening import MAX_RESTARTS

Inspect = Mapping[str, Any]
SENSITIVE_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    passed: bool
    # Why it failed (or what was seen), safe to print.
    detail: str
    # Not a CIS item: reported, but a container is not failed for it.
    advisory: bool = False


@dataclass(frozen=True)
class CisCheck:
    id: str
    title: str
    # Returns None when the container passes, else what is wrong.
    problem: Callable[[Inspect], str | None]


def _host(attrs: Inspect) -> Mapping[str, Any]:
    return attrs.get("HostConfig") or {}


def _mounts(attrs: Inspect) -> list[Mapping[str, Any]]:
    return list(attrs.get("Mounts") or [])


def _caps(attrs: Inspect) -> str | None:
    drop = [c.upper().removeprefix("CAP_") for c in _host(attrs).get("CapDrop") or []]
    add = [c.upper().removeprefix("CAP_") for c in _host(attrs).get("CapAdd") or []]
    if "ALL" not in drop:
        return "CapDrop does not contain ALL"
    if "ALL" in add or "SYS_ADMIN" in add:
        return f"CapAdd grants {', '.join(add)}"
    return None


def _sensitive_mount(attrs: Inspect) -> str | None:
    for mount in _mounts(attrs):
        if mount.get("Type") != "bind":
            continue
        source = posixpath.normpath(str(mount.get("Source", "")))
        for directory in SENSITIVE_DIRS:
            if source == directory or (directory != "/" and source.startswith(directory + "/")):
                return f"{source} is mounted"
    return None


def _bindings(attrs: Inspect) -> list[Mapping[str, Any]]:
    ports = _host(attrs).get("PortBindings") or {}
    return [b for bound in ports.values() for b in (bound or [])]


def _privileged_port(attrs: Inspect) -> str | None:
    low = [
        b["HostPort"]
        for b in _bindings(attrs)
        if str(b.get("HostPort") or "0").isdigit() and 0 < int(b.get("HostPort") or 0) < 1024
    ]
    return f"host port(s) {', '.join(low)} below 1024" if low else None


# Addresses that mean "every interface" when a port is published (checked, never bound).
WILDCARD_ADDRESSES = (None, "", "0.0.0.0", "::")  # noqa: S104  # nosec B104


def _wildcard_binding(attrs: Inspect) -> str | None:
    wild = [b for b in _bindings(attrs) if b.get("HostIp") in WILDCARD_ADDRESSES]
    return "a port is published on all interfaces" if wild else None


def _restart(attrs: Inspect) -> str | None:
    policy = _host(attrs).get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name in ("no", ""):
        return None
    if name != "on-failure" or int(policy.get("MaximumRetryCount") or 0) > MAX_RESTARTS:
        return f"restart policy {name} (max {policy.get('MaximumRetryCount')})"
    return None


def _not_host(key: str) -> Callable[[Inspect], str | None]:
    def check(attrs: Inspect) -> str | None:
        return f"{key} is host" if _host(attrs).get(key) == "host" else None

    return check


def _positive(key: str) -> Callable[[Inspect], str | None]:
    def check(attrs: Inspect) -> str | None:
        return None if int(_host(attrs).get(key) or 0) > 0 else f"{key} is not set"

    return check


def _cpu(attrs: Inspect) -> str | None:
    host = _host(attrs)
    if int(host.get("NanoCpus") or 0) > 0 or int(host.get("CpuShares") or 0) > 0:
        return None
    return "neither NanoCpus nor CpuShares is set"


def _security_opt(attrs: Inspect) -> list[str]:
    return [str(o) for o in _host(attrs).get("SecurityOpt") or []]


def _seccomp(attrs: Inspect) -> str | None:
    unconfined = any(o.replace(":", "=") == "seccomp=unconfined" for o in _security_opt(attrs))
    return "seccomp is unconfined" if unconfined else None


def _no_new_privileges(attrs: Inspect) -> str | None:
    accepted = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
    return None if any(o in accepted for o in _security_opt(attrs)) else "not set"


def _healthcheck(attrs: Inspect) -> str | None:
    test = ((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    return None if test and test[0] != "NONE" else "no healthcheck"


def _propagation(attrs: Inspect) -> str | None:
    shared = [
        m.get("Destination")
        for m in _mounts(attrs)
        if m.get("Propagation") in ("shared", "rshared")
    ]
    return f"shared propagation on {shared}" if shared else None


def _docker_socket(attrs: Inspect) -> str | None:
    found = [m.get("Source") for m in _mounts(attrs) if "docker.sock" in str(m.get("Source"))]
    return "the Docker socket is mounted" if found else None


CHECKS: tuple[CisCheck, ...] = (
    CisCheck("5.4", "Linux kernel capabilities are restricted", _caps),
    CisCheck(
        "5.5",
        "Privileged containers are not used",
        lambda a: "privileged" if _host(a).get("Privileged") else None,
    ),
    CisCheck("5.6", "Sensitive host system directories are not mounted", _sensitive_mount),
    CisCheck("5.8", "Privileged ports are not mapped", _privileged_port),
    CisCheck("5.10", "The host's network namespace is not shared", _not_host("NetworkMode")),
    CisCheck("5.11", "Memory usage is limited", _positive("Memory")),
    CisCheck("5.12", "CPU usage is limited", _cpu),
    CisCheck(
        "5.13",
        "The root filesystem is mounted read only",
        lambda a: None if _host(a).get("ReadonlyRootfs") else "root filesystem is writable",
    ),
    CisCheck("5.14", "Incoming traffic is bound to a specific host interface", _wildcard_binding),
    CisCheck("5.15", "The 'on-failure' restart policy is set to at most 5", _restart),
    CisCheck("5.16", "The host's process namespace is not shared", _not_host("PidMode")),
    CisCheck("5.17", "The host's IPC namespace is not shared", _not_host("IpcMode")),
    CisCheck(
        "5.18",
        "Host devices are not directly exposed",
        lambda a: "devices are exposed" if _host(a).get("Devices") else None,
    ),
    CisCheck("5.20", "Mount propagation mode is not shared", _propagation),
    CisCheck("5.21", "The host's UTS namespace is not shared", _not_host("UTSMode")),
    CisCheck("5.22", "The default seccomp profile is not disabled", _seccomp),
    CisCheck(
        "5.25",
        "cgroup usage is confirmed (default cgroup parent)",
        lambda a: (
            f"cgroup parent {_host(a)['CgroupParent']}" if _host(a).get("CgroupParent") else None
        ),
    ),
    CisCheck("5.26", "The container cannot acquire additional privileges", _no_new_privileges),
    CisCheck("5.27", "Container health is checked at runtime", _healthcheck),
    CisCheck("5.29", "The PIDs cgroup limit is used", _positive("PidsLimit")),
    CisCheck("5.31", "The host's user namespaces are not shared", _not_host("UsernsMode")),
    CisCheck("5.32", "The Docker socket is not mounted", _docker_socket),
)


def _init(attrs: Inspect) -> str | None:
    return None if _host(attrs).get("Init") else "no init: PID 1 may ignore the stop signal"


ADVISORIES: tuple[CisCheck, ...] = (
    CisCheck("init", "An init process forwards stop signals and reaps zombies", _init),
)


def check_container(attrs: Inspect) -> list[CheckResult]:
    """Every section-5 check, then the advisories, against one container's `docker inspect`."""
    results = []
    for checks, advisory in ((CHECKS, False), (ADVISORIES, True)):
        for check in checks:
            problem = check.problem(attrs)
            results.append(
                CheckResult(check.id, check.title, problem is None, problem or "ok", advisory)
            )
    return results
