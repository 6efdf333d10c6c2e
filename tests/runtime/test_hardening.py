"""Launch kwargs carry every hardening setting; the integration suite proves them with inspect."""

from __future__ import annotations

from typing import Any

from wakedock.runtime.engine_spec import container_kwargs
from wakedock.runtime.hardening import harden
from wakedock.services.launch import launch_of
from wakedock.services.policy import PolicySettings
from wakedock.services.spec import ServiceSpec

NS = 1_000_000_000


def make_spec(**overrides: Any) -> ServiceSpec:
    data: dict[str, Any] = {
        "name": "web",
        "image": "wakedock/test-app:1",
        "readiness": {"type": "http", "path": "/health", "port": 8080},
        "ports": [
            {"container_port": 8080, "host_port": 18080},
            {"container_port": 53, "protocol": "udp"},
        ],
        "limits": {"memory_mb": 128, "cpus": 0.25, "pids": 64},
    }
    data.update(overrides)
    return ServiceSpec.model_validate(data)


def kwargs_for(
    spec: ServiceSpec,
    *,
    policy: PolicySettings | None = None,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the Engine runtime of installation `install-1` hands to docker-py for `spec`."""
    return container_kwargs(harden(launch_of(spec, environment, policy), "install-1"))


def test_every_hardening_field_present() -> None:
    kwargs = kwargs_for(make_spec(cap_add=["NET_BIND_SERVICE"]))
    assert kwargs["image"] == "wakedock/test-app:1"
    assert kwargs["name"] == "install-1-web"
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["cap_add"] == ["NET_BIND_SERVICE"]
    assert kwargs["security_opt"] == ["no-new-privileges:true"]
    assert kwargs["read_only"] is True
    assert kwargs["tmpfs"] == {"/tmp": "rw,noexec,nosuid,size=64m"}
    assert kwargs["mem_limit"] == "128m"
    assert kwargs["memswap_limit"] == "128m"
    assert kwargs["nano_cpus"] == 250_000_000
    assert kwargs["pids_limit"] == 64
    assert kwargs["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert kwargs["privileged"] is False
    assert kwargs["labels"] == {"wakedock.managed": "install-1", "wakedock.service": "web"}
    assert kwargs["healthcheck"]["test"][0] == "CMD-SHELL"
    for namespace in ("network_mode", "pid_mode", "ipc_mode", "uts_mode", "devices"):
        assert namespace not in kwargs


def test_ports_bound_to_loopback_only() -> None:
    assert kwargs_for(make_spec())["ports"] == {
        "8080/tcp": ("127.0.0.1", 18080),
        "53/udp": ("127.0.0.1", None),
    }


def test_defaults_applied_from_spec() -> None:
    spec = ServiceSpec.model_validate(
        {"name": "db", "image": "postgres:16", "readiness": {"type": "tcp", "port": 5432}}
    )
    kwargs = kwargs_for(spec)
    assert (kwargs["mem_limit"], kwargs["nano_cpus"], kwargs["pids_limit"]) == (
        "256m",
        NS // 2,
        256,
    )
    assert kwargs["ports"] == {}
    assert kwargs["volumes"] == {}
    assert kwargs["command"] is None


def test_docker_healthcheck_passed_through_in_nanoseconds() -> None:
    readiness = {
        "type": "healthcheck",
        "test": ["CMD", "pg_isready"],
        "interval_s": 7,
        "timeout_s": 3,
        "retries": 4,
    }
    assert kwargs_for(make_spec(readiness=readiness))["healthcheck"] == {
        "test": ["CMD", "pg_isready"],
        "interval": 7 * NS,
        "timeout": 3 * NS,
        "retries": 4,
    }


def test_tcp_readiness_uses_nc() -> None:
    check = kwargs_for(make_spec(readiness={"type": "tcp", "port": 5432}))["healthcheck"]
    assert check["test"] == ["CMD-SHELL", "nc -z 127.0.0.1 5432 || exit 1"]


def test_http_readiness_uses_wget() -> None:
    check = kwargs_for(make_spec())["healthcheck"]
    assert check["test"] == [
        "CMD-SHELL",
        "wget -q -O /dev/null http://127.0.0.1:8080/health || exit 1",
    ]


def test_allowed_network_mode_passed_through() -> None:
    assert kwargs_for(make_spec(network_mode="wakedock-net"))["network_mode"] == "wakedock-net"


def test_admin_relaxation_passes_through() -> None:
    policy = PolicySettings(allow_writable_root=True)
    assert kwargs_for(make_spec(read_only_root=False), policy=policy)["read_only"] is False


def test_volumes_mapped_and_named_volumes_namespaced() -> None:
    spec = make_spec(
        volumes=[
            {"name": "data", "target": "/data"},
            {"source": "/srv/wakedock/web", "target": "/srv", "read_only": True},
        ]
    )
    policy = PolicySettings(bind_mount_allowlist=("/srv/wakedock",))
    assert kwargs_for(spec, policy=policy)["volumes"] == {
        "install-1_web_data": {"bind": "/data", "mode": "rw"},
        "/srv/wakedock/web": {"bind": "/srv", "mode": "ro"},
    }


def test_plain_env_passed_through() -> None:
    assert kwargs_for(make_spec(env={"MODE": "prod"}))["environment"] == {"MODE": "prod"}


def test_launched_with_an_init_and_the_specs_stop_settings() -> None:
    default = kwargs_for(make_spec())
    assert default["init"] is True
    assert default["stop_timeout"] == 10
    assert "stop_signal" not in default  # the image's STOPSIGNAL applies
    chosen = kwargs_for(make_spec(stop_signal="SIGQUIT", stop_timeout_s=45))
    assert (chosen["stop_signal"], chosen["stop_timeout"]) == ("SIGQUIT", 45)
