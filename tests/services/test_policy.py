"""The policy engine refuses every dangerous spec, each for a named reason, all at once."""

from __future__ import annotations

from typing import Any

import pytest

from wakedock.services.policy import PolicySettings, Violation, violations
from wakedock.services.spec import BindMount, ServiceSpec

ALLOW_SRV = PolicySettings(bind_mount_allowlist=("/srv/wakedock",))


def make_spec(**overrides: Any) -> ServiceSpec:
    data: dict[str, Any] = {
        "name": "web",
        "image": "nginx:1.25",
        "readiness": {"type": "tcp", "port": 80},
    }
    data.update(overrides)
    return ServiceSpec.model_validate(data)


def bind(source: str) -> ServiceSpec:
    return make_spec(volumes=[{"source": source, "target": "/data"}])


def rules(found: list[Violation]) -> set[tuple[str, str]]:
    return {(v.field, v.rule) for v in found}


def test_clean_spec_has_no_violations() -> None:
    spec = make_spec(
        cap_add=["NET_BIND_SERVICE"],
        volumes=[
            {"name": "data", "target": "/data"},
            {"source": "/srv/wakedock/web", "target": "/srv"},
        ],
        network_mode="bridge",
        ports=[{"container_port": 80, "host_port": 8080}],
    )
    assert violations(spec, ALLOW_SRV) == []


@pytest.mark.parametrize("network", ["wd-it-net-1a2b3c4d", "apps_net.v2", "wd-swarm-net-0f"])
def test_a_user_defined_network_is_accepted(network: str) -> None:
    # What the container tests use instead of Docker's default bridge (and a Swarm overlay).
    spec = make_spec(network_mode=network)
    assert spec.network_mode == network
    assert violations(spec, ALLOW_SRV) == []


def test_privileged_refused() -> None:
    assert rules(violations(make_spec(privileged=True), ALLOW_SRV)) == {
        ("privileged", "privileged")
    }


@pytest.mark.parametrize("cap", ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "ALL"])
def test_capability_outside_allowlist_refused(cap: str) -> None:
    found = violations(make_spec(cap_add=["CHOWN", cap]), ALLOW_SRV)
    assert rules(found) == {("cap_add[1]", "capability")}


def test_all_cannot_be_allowlisted() -> None:
    with pytest.raises(ValueError, match="ALL"):
        PolicySettings(cap_allowlist=frozenset({"ALL"}))


def test_all_refused_even_from_a_tampered_allowlist() -> None:
    policy = PolicySettings()
    object.__setattr__(policy, "cap_allowlist", frozenset({"ALL"}))  # skips __post_init__
    assert rules(violations(make_spec(cap_add=["ALL"]), policy)) == {("cap_add[0]", "capability")}


def test_admin_allowlist_admits_a_capability() -> None:
    policy = PolicySettings(cap_allowlist=frozenset({"NET_ADMIN"}))
    assert violations(make_spec(cap_add=["net_admin"]), policy) == []
    assert rules(violations(make_spec(cap_add=["CHOWN"]), policy)) == {("cap_add[0]", "capability")}


@pytest.mark.parametrize("field", ["network_mode", "pid_mode", "ipc_mode", "uts_mode"])
def test_host_namespace_refused(field: str) -> None:
    found = violations(make_spec(**{field: "host"}), ALLOW_SRV)
    assert rules(found) == {(field, "host_namespace")}


@pytest.mark.parametrize("field", ["network_mode", "pid_mode", "ipc_mode"])
def test_joining_another_containers_namespace_refused(field: str) -> None:
    found = violations(make_spec(**{field: "container:db"}), ALLOW_SRV)
    assert rules(found) == {(field, "shared_namespace")}


def test_device_refused() -> None:
    found = violations(make_spec(devices=["/dev/null", "/dev/fuse"]), ALLOW_SRV)
    assert rules(found) == {("devices[0]", "device"), ("devices[1]", "device")}


@pytest.mark.parametrize(
    "source",
    [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run",
        "/run/user/1000/docker.sock",
        "/var/run/",
        "//var//run/docker.sock",
        "//var//run",
        "/var",  # contains /var/run
        "/",
        "/home/me/.docker/run/docker.sock",
    ],
)
def test_docker_socket_refused(source: str) -> None:
    found = violations(bind(source), PolicySettings(bind_mount_allowlist=("/",)))
    assert ("volumes[0].source", "docker_socket") in rules(found)


def test_docker_socket_refused_even_when_allowlisted() -> None:
    policy = PolicySettings(bind_mount_allowlist=("/var/run",))
    found = violations(bind("/var/run/docker.sock"), policy)
    assert ("volumes[0].source", "docker_socket") in rules(found)


@pytest.mark.parametrize(
    "source",
    ["/", "/etc", "/etc/shadow", "/proc", "/sys/fs", "/dev", "/boot", "/root/.ssh", "/usr/bin",
     "/bin", "/sbin", "/lib", "/var/lib/docker", "/var/lib/docker/volumes", "/var", "/var/lib"],
)  # fmt: skip
def test_sensitive_host_path_refused(source: str) -> None:
    # Allowlisting them does not help: sensitive paths are refused regardless.
    found = violations(bind(source), PolicySettings(bind_mount_allowlist=(source,)))
    assert ("volumes[0].source", "sensitive_path") in rules(found)


@pytest.mark.parametrize("source", ["/srv/other", "/srv/wakedockx", "/home/me"])
def test_bind_outside_allowlist_refused(source: str) -> None:
    assert rules(violations(bind(source), ALLOW_SRV)) == {
        ("volumes[0].source", "bind_not_allowlisted")
    }


def test_no_bind_mounts_by_default() -> None:
    found = violations(bind("/srv/wakedock/web"), PolicySettings())
    assert rules(found) == {("volumes[0].source", "bind_not_allowlisted")}


def test_dotdot_escape_refused() -> None:
    found = violations(bind("/srv/wakedock/../../etc"), ALLOW_SRV)
    assert rules(found) == {
        ("volumes[0].source", "path_traversal"),
        ("volumes[0].source", "sensitive_path"),
        ("volumes[0].source", "bind_not_allowlisted"),
    }


def test_dotdot_inside_allowlist_still_refused() -> None:
    found = violations(bind("/srv/wakedock/a/../b"), ALLOW_SRV)
    assert rules(found) == {("volumes[0].source", "path_traversal")}


def test_model_construct_bypass_still_judged() -> None:
    # A spec built without validation (e.g. from the database) gets the same verdict.
    spec = make_spec().model_copy(
        update={"volumes": [BindMount.model_construct(source="/etc", target="/x", read_only=True)]}
    )
    assert ("volumes[0].source", "sensitive_path") in rules(violations(spec, ALLOW_SRV))


def test_writable_root_needs_admin_relaxation() -> None:
    spec = make_spec(read_only_root=False)
    assert rules(violations(spec, ALLOW_SRV)) == {("read_only_root", "writable_root")}
    assert violations(spec, PolicySettings(allow_writable_root=True)) == []


def test_several_violations_reported_together() -> None:
    spec = make_spec(
        privileged=True,
        cap_add=["SYS_ADMIN", "ALL"],
        network_mode="host",
        pid_mode="host",
        ipc_mode="host",
        uts_mode="host",
        devices=["/dev/sda"],
        volumes=[
            {"source": "/var/run/docker.sock", "target": "/sock"},
            {"name": "data", "target": "/data"},
            {"source": "/etc", "target": "/host-etc"},
            {"source": "/opt/elsewhere", "target": "/opt"},
        ],
    )
    assert rules(violations(spec, ALLOW_SRV)) == {
        ("privileged", "privileged"),
        ("cap_add[0]", "capability"),
        ("cap_add[1]", "capability"),
        ("network_mode", "host_namespace"),
        ("pid_mode", "host_namespace"),
        ("ipc_mode", "host_namespace"),
        ("uts_mode", "host_namespace"),
        ("devices[0]", "device"),
        ("volumes[0].source", "docker_socket"),
        ("volumes[0].source", "bind_not_allowlisted"),
        ("volumes[2].source", "sensitive_path"),
        ("volumes[2].source", "bind_not_allowlisted"),
        ("volumes[3].source", "bind_not_allowlisted"),
    }


def test_allowlist_entries_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        PolicySettings(bind_mount_allowlist=("srv",))
    with pytest.raises(ValueError, match="absolute"):
        PolicySettings(bind_mount_allowlist=("/srv/../etc",))


KERNEL_TARGETS = ["/proc", "/sys", "/dev", "/dev/shm", "/proc/sys/kernel", "/sys/fs/cgroup",
                  "//proc", "/./sys", "/dev/"]  # fmt: skip


@pytest.mark.security
@pytest.mark.parametrize("target", KERNEL_TARGETS)
def test_tmpfs_over_a_kernel_filesystem_refused(target: str) -> None:
    found = violations(make_spec(tmpfs=["/tmp", target]), ALLOW_SRV)
    assert rules(found) == {("tmpfs[1]", "kernel_filesystem")}
    # One fixed message whatever was submitted: the input is never echoed.
    [canonical] = violations(make_spec(tmpfs=["/proc"]), ALLOW_SRV)
    assert {v.message for v in found} == {canonical.message}


@pytest.mark.security
@pytest.mark.parametrize("target", KERNEL_TARGETS)
def test_volumes_over_a_kernel_filesystem_refused(target: str) -> None:
    named = violations(make_spec(volumes=[{"name": "data", "target": target}]), ALLOW_SRV)
    assert rules(named) == {("volumes[0].target", "kernel_filesystem")}
    bound = violations(
        make_spec(volumes=[{"source": "/srv/wakedock/web", "target": target}]), ALLOW_SRV
    )
    assert rules(bound) == {("volumes[0].target", "kernel_filesystem")}


@pytest.mark.parametrize("target", ["/tmp", "/procfs", "/system", "/devices", "/srv/proc"])
def test_paths_merely_resembling_kernel_filesystems_are_fine(target: str) -> None:
    assert violations(make_spec(tmpfs=[target]), ALLOW_SRV) == []
    assert violations(make_spec(volumes=[{"name": "data", "target": target}]), ALLOW_SRV) == []


@pytest.mark.security
@pytest.mark.parametrize("port", [1, 80, 443, 1023])
def test_privileged_host_port_refused_unless_allowed(port: int) -> None:
    ports = [{"container_port": 80, "host_port": 8080}, {"container_port": 443, "host_port": port}]
    spec = make_spec(ports=ports)
    assert rules(violations(spec, ALLOW_SRV)) == {("ports[1].host_port", "privileged_port")}
    assert violations(spec, PolicySettings(allow_privileged_host_ports=True)) == []


def test_unprivileged_and_engine_chosen_host_ports_are_fine() -> None:
    spec = make_spec(ports=[{"container_port": 80, "host_port": 1024}, {"container_port": 81}])
    assert violations(spec, ALLOW_SRV) == []
