"""The policy engine (S6.3): which valid service specs WakeDock refuses to launch, and why.

`violations` returns every problem at once so a user fixes a spec in one round trip, and the
launcher calls it again right before creating a container (defence in depth).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field, replace

from wakedock.services.spec import BindMount, ServiceSpec

# Each default is needed by common images, and none gives a way out of the container:
# CHOWN/SETUID/SETGID let entrypoints (postgres, nginx, redis) drop from root to their own user;
# DAC_OVERRIDE lets those entrypoints fix ownership of files created by another uid on a volume;
# NET_BIND_SERVICE lets a server bind a port below 1024 inside its own network namespace.
DEFAULT_CAP_ALLOWLIST = frozenset({"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE", "DAC_OVERRIDE"})

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Runtime directories hold the engine's socket (rootful and rootless: /run/user/<uid>/docker.sock).
SOCKET_DIRS = ("/var/run", "/run")
SENSITIVE_HOST_PATHS = (
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/var/lib/docker",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
)
# The kernel's own filesystems inside the container. A mount over them hides what the runtime
# masks there (runc's CVE-2019-16884 and CVE-2019-19921 went through mounts over /proc), and
# Docker already provides /dev/shm. Refused for tmpfs, named volumes and bind targets alike.
KERNEL_MOUNT_POINTS = ("/proc", "/sys", "/dev")
# Binding below 1024 on the host is what only root may do (CIS 5.8): an admin's choice.
FIRST_UNPRIVILEGED_PORT = 1024


@dataclass(frozen=True)
class Violation:
    """One reason a spec is refused; `field` is the spec path a user must change.

    The message never repeats the refused value: `field` says which one it is.
    """

    field: str
    rule: str
    message: str


@dataclass(frozen=True)
class PolicySettings:
    """What an admin allows beyond the hardened defaults."""

    cap_allowlist: frozenset[str] = DEFAULT_CAP_ALLOWLIST
    # Host directories (absolute) under which bind mounts are allowed. Empty: no bind mounts.
    bind_mount_allowlist: tuple[str, ...] = field(default_factory=tuple)
    # A writable root filesystem is a relaxation only an admin may grant (the caller decides who).
    allow_writable_root: bool = False
    # Host ports below 1024 (docker.allow_privileged_host_ports).
    allow_privileged_host_ports: bool = False
    # docker.network: the one network services join (or none at all).
    network: str | None = None

    def __post_init__(self) -> None:
        if "ALL" in self.cap_allowlist:
            raise ValueError("cap_allowlist must name capabilities, not ALL")
        for index, path in enumerate(self.bind_mount_allowlist):
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"bind_mount_allowlist[{index}] must be an absolute path")


def _is_within(path: str, root: str) -> bool:
    """True when `path` is `root` or below it (both normalized)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _host_forms(source: str) -> set[str]:
    # The lexical form is what Docker receives; the resolved form catches symlinks on this host
    # (e.g. /var/run -> /run). Both must pass.
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined); Linux reads it as "/".
    return {"/" + posixpath.normpath(source).lstrip("/"), os.path.realpath(source)}


def _bind_violations(index: int, mount: BindMount, policy: PolicySettings) -> list[Violation]:
    where = f"volumes[{index}].source"
    found: list[Violation] = []
    if ".." in mount.source.split("/"):
        found.append(Violation(where, "path_traversal", "bind mount source contains '..'"))
    forms = _host_forms(mount.source)
    exposes_socket = any(
        form in DOCKER_SOCKETS
        or posixpath.basename(form) == "docker.sock"
        or any(_is_within(form, d) or _is_within(d, form) for d in SOCKET_DIRS)
        for form in forms
    )
    if exposes_socket:
        found.append(
            Violation(where, "docker_socket", "mounting the Docker socket gives root on the host")
        )
    # A path is sensitive when it lies under a sensitive directory, or contains one (mounting /var
    # exposes /var/lib/docker); "/" only by itself, since everything lies under it.
    sensitive = any(
        _is_within(form, s) if s != "/" else form == "/"
        for form in forms
        for s in SENSITIVE_HOST_PATHS
    ) or any(_is_within(s, form) for form in forms for s in SENSITIVE_HOST_PATHS)
    if sensitive:
        found.append(Violation(where, "sensitive_path", "the source is a sensitive host path"))
    allowed = [form for root in policy.bind_mount_allowlist for form in _host_forms(root)]
    if not all(any(_is_within(form, root) for root in allowed) for form in forms):
        found.append(
            Violation(where, "bind_not_allowlisted", "the source is outside the allowlist")
        )
    return found


def _namespace_violations(spec: ServiceSpec, policy: PolicySettings) -> list[Violation]:
    found: list[Violation] = []
    mode = spec.network_mode
    # With docker.network, WakeDock reaches a service by its name on that network only; "none"
    # isolates more, and host and container:<id> are refused below in any case.
    other = mode is not None and mode not in ("none", "host", policy.network)
    if policy.network is not None and other and not str(mode).startswith("container:"):
        found.append(
            Violation(
                "network_mode",
                "other_network",
                "services join the network docker.network names (leave network_mode unset)",
            )
        )
    # Docker only accepts "container:<id>" for network, PID and IPC; UTS knows only "host".
    modes = {
        "network_mode": spec.network_mode,
        "pid_mode": spec.pid_mode,
        "ipc_mode": spec.ipc_mode,
        "uts_mode": spec.uts_mode,
    }
    for name, mode in modes.items():
        if mode == "host":
            found.append(
                Violation(name, "host_namespace", f"{name} 'host' shares the host's namespace")
            )
        elif mode is not None and mode.startswith("container:"):
            found.append(
                Violation(name, "shared_namespace", f"{name} joins another container's namespace")
            )
    return found


def _covers_kernel_filesystem(target: str) -> bool:
    # Targets are absolute without '..'; "//proc", "/./proc" and "/proc/" still name /proc.
    path = "/" + posixpath.normpath(target).lstrip("/")
    return any(_is_within(path, root) or _is_within(root, path) for root in KERNEL_MOUNT_POINTS)


def _mount_point_violations(spec: ServiceSpec) -> list[Violation]:
    message = "a mount over /proc, /sys or /dev (or below them) is refused"
    targets = [(f"tmpfs[{i}]", path) for i, path in enumerate(spec.tmpfs)]
    targets += [(f"volumes[{i}].target", v.target) for i, v in enumerate(spec.volumes)]
    return [
        Violation(where, "kernel_filesystem", message)
        for where, target in targets
        if _covers_kernel_filesystem(target)
    ]


def _port_violations(spec: ServiceSpec, policy: PolicySettings) -> list[Violation]:
    if policy.allow_privileged_host_ports:
        return []
    return [
        Violation(
            f"ports[{index}].host_port",
            "privileged_port",
            f"host ports below {FIRST_UNPRIVILEGED_PORT} are refused "
            "(docker.allow_privileged_host_ports)",
        )
        for index, port in enumerate(spec.ports)
        if port.host_port is not None and port.host_port < FIRST_UNPRIVILEGED_PORT
    ]


def violations(spec: ServiceSpec, policy: PolicySettings) -> list[Violation]:
    """Every reason `spec` may not be launched under `policy`; empty when it may."""
    found: list[Violation] = []
    if spec.privileged:
        found.append(Violation("privileged", "privileged", "privileged containers are refused"))
    for index, cap in enumerate(spec.cap_add):
        if cap == "ALL" or cap not in policy.cap_allowlist:
            found.append(
                Violation(f"cap_add[{index}]", "capability", "this capability is not allowed")
            )
    found.extend(_namespace_violations(spec, policy))
    for index in range(len(spec.devices)):
        found.append(Violation(f"devices[{index}]", "device", "host devices are not allowed"))
    for index, volume in enumerate(spec.volumes):
        if isinstance(volume, BindMount):
            found.extend(_bind_violations(index, volume, policy))
    found.extend(_mount_point_violations(spec))
    found.extend(_port_violations(spec, policy))
    if not spec.read_only_root and not policy.allow_writable_root:
        found.append(
            Violation("read_only_root", "writable_root", "a writable root needs an admin's consent")
        )
    return found


def with_writable_root_rule(
    spec: ServiceSpec, policy: PolicySettings, *, admin: bool, already_granted: bool
) -> tuple[bool, list[Violation]]:
    """The writable-root grant of `spec`, and every violation once that grant is applied.

    Only an admin may grant a writable root filesystem; once granted it stays with the
    service (a developer may keep editing it) until a spec asks for a read-only root again.
    """
    granted = not spec.read_only_root and (already_granted or admin)
    return granted, violations(spec, replace(policy, allow_writable_root=granted))
