"""The CIS section-5 checks on `docker inspect` shapes: each check passes a hardened container
and fails the specific misconfiguration it exists for (the real engine: integration tests)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from wakedock.runtime.cis import ADVISORIES, CHECKS, check_container

ANY_V4 = "0.0.0.0"  # noqa: S104 - the misconfiguration under test, never bound


def hardened() -> dict[str, Any]:
    return {
        "Name": "/wakedock-app",
        "HostConfig": {
            "CapDrop": ["ALL"],
            "CapAdd": None,
            "Privileged": False,
            "NetworkMode": "default",
            "PidMode": "",
            "IpcMode": "private",
            "UTSMode": "",
            "UsernsMode": "",
            "Memory": 268435456,
            "NanoCpus": 500000000,
            "CpuShares": 0,
            "PidsLimit": 256,
            "ReadonlyRootfs": True,
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5},
            "SecurityOpt": ["no-new-privileges:true"],
            "Devices": [],
            "CgroupParent": "",
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            "Init": True,
        },
        "Config": {"Healthcheck": {"Test": ["CMD-SHELL", "true"]}},
        "Mounts": [{"Type": "volume", "Source": "/var/lib/docker/volumes/x", "Destination": "/d"}],
    }


def failing(attrs: dict[str, Any]) -> set[str]:
    return {r.id for r in check_container(attrs) if not r.passed}


def test_a_hardened_container_passes_every_check() -> None:
    results = check_container(hardened())
    assert [r.id for r in results] == [c.id for c in (*CHECKS, *ADVISORIES)]
    assert failing(hardened()) == set()


def _set(path: str, value: Any) -> dict[str, Any]:
    attrs = copy.deepcopy(hardened())
    *parents, leaf = path.split(".")
    node = attrs
    for key in parents:
        node = node[key]
    node[leaf] = value
    return attrs


@pytest.mark.parametrize(
    ("cis_id", "attrs"),
    [
        ("5.4", _set("HostConfig.CapDrop", [])),
        ("5.4", _set("HostConfig.CapAdd", ["SYS_ADMIN"])),
        ("5.5", _set("HostConfig.Privileged", True)),
        ("5.6", _set("Mounts", [{"Type": "bind", "Source": "/etc", "Destination": "/h"}])),
        (
            "5.8",
            _set(
                "HostConfig.PortBindings", {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "80"}]}
            ),
        ),
        ("5.10", _set("HostConfig.NetworkMode", "host")),
        ("5.11", _set("HostConfig.Memory", 0)),
        ("5.12", _set("HostConfig.NanoCpus", 0)),
        ("5.13", _set("HostConfig.ReadonlyRootfs", False)),
        ("5.14", _set("HostConfig.PortBindings", {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]})),
        (
            "5.14",
            _set("HostConfig.PortBindings", {"80/tcp": [{"HostIp": ANY_V4, "HostPort": "9000"}]}),
        ),
        ("5.15", _set("HostConfig.RestartPolicy", {"Name": "always", "MaximumRetryCount": 0})),
        ("5.15", _set("HostConfig.RestartPolicy", {"Name": "on-failure", "MaximumRetryCount": 9})),
        ("5.16", _set("HostConfig.PidMode", "host")),
        ("5.17", _set("HostConfig.IpcMode", "host")),
        ("5.18", _set("HostConfig.Devices", [{"PathOnHost": "/dev/sda"}])),
        (
            "5.20",
            _set(
                "Mounts",
                [
                    {
                        "Type": "bind",
                        "Source": "/srv/x",
                        "Destination": "/x",
                        "Propagation": "rshared",
                    }
                ],
            ),
        ),
        ("5.21", _set("HostConfig.UTSMode", "host")),
        ("5.22", _set("HostConfig.SecurityOpt", ["no-new-privileges:true", "seccomp=unconfined"])),
        ("5.25", _set("HostConfig.CgroupParent", "/custom")),
        ("5.26", _set("HostConfig.SecurityOpt", [])),
        ("5.27", _set("Config.Healthcheck", {"Test": ["NONE"]})),
        ("5.27", _set("Config", {})),
        ("5.29", _set("HostConfig.PidsLimit", None)),
        ("5.31", _set("HostConfig.UsernsMode", "host")),
        (
            "5.32",
            _set("Mounts", [{"Type": "bind", "Source": "/run/docker.sock", "Destination": "/s"}]),
        ),
    ],
)
def test_each_misconfiguration_fails_its_check(cis_id: str, attrs: dict[str, Any]) -> None:
    assert cis_id in failing(attrs)


def test_a_container_without_init_is_advised_not_failed() -> None:
    [result] = [r for r in check_container(_set("HostConfig.Init", None)) if r.id == "init"]
    assert not result.passed and result.advisory
    assert all(r.passed for r in check_container(_set("HostConfig.Init", None)) if not r.advisory)
