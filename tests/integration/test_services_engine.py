"""The services API and CLI on the real Docker engine: lifecycle with every hardening field seen
in `docker inspect`, dangerous specs refused (one test each), bystanders untouched, discovery,
reconciliation after a hand-removed container, the daemon going away, and `cis-check`."""

from __future__ import annotations

import logging
import re
import secrets
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from conftest import Harness
from support.docker_images import TEST_IMAGE
from support.engine import (  # noqa: F401 - fixtures
    SOCKET,
    add_by_cli,
    busybox_spec,
    container_of,
    database_url,
    h,
    wait_for,
)
from support.server import run_cli, wakedock_server
from support.socket_relay import SocketRelay
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.runtime.docker_engine import DockerEngineRuntime

pytestmark = pytest.mark.integration


def test_lifecycle_through_the_api_on_the_real_engine(
    h: Harness, engine: docker.DockerClient, installation: str, network: str
) -> None:
    token = h.token_for(Role.DEVELOPER)
    auth = h.bearer(token)
    created = h.client.post("/api/v1/services", json=busybox_spec("web", network), headers=auth)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    container = container_of(engine, installation, "web")
    assert container.status == "created"

    assert h.client.post(f"/api/v1/services/{sid}/start", headers=auth).status_code == 200

    def healthy() -> bool:
        return h.client.get(f"/api/v1/services/{sid}/status", headers=auth).json()["health"] == (
            "healthy"
        )

    wait_for(healthy, "the service to become healthy")
    attrs = engine.api.inspect_container(container.id)
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert host["Privileged"] is False
    assert host["NetworkMode"] != "host" and host["PidMode"] != "host"
    assert host["NetworkMode"] == network  # the test's own bridge, not Docker's default one
    assert host["IpcMode"] != "host" and host["UTSMode"] != "host"
    assert not host["Devices"]
    assert not any("docker.sock" in m["Source"] for m in attrs["Mounts"])
    assert attrs["Config"]["Healthcheck"]["Test"][0] == "CMD-SHELL"
    assert attrs["Config"]["Labels"]["wakedock.managed"] == installation
    published = attrs["NetworkSettings"]["Ports"]["8080/tcp"]
    assert {p["HostIp"] for p in published} == {"127.0.0.1"}
    with urllib.request.urlopen(
        f"http://127.0.0.1:{published[0]['HostPort']}/index.html", timeout=5
    ) as reply:
        assert reply.read().strip() == b"ok"

    stats = h.client.get(f"/api/v1/services/{sid}/stats", headers=auth)
    assert stats.status_code == 200, stats.text
    assert stats.json()["memory_bytes"] > 0
    assert stats.json()["memory_limit_bytes"] == 256 * 2**20
    assert stats.json()["network_rx_bytes"] >= 0 and stats.json()["cpu_percent"] >= 0
    logs = h.client.get(f"/api/v1/services/{sid}/logs?tail=50", headers=auth)
    assert "service-log-line" in logs.text

    stopped = h.client.post(f"/api/v1/services/{sid}/stop", headers=auth)
    assert stopped.json()["state"] == "stopped"
    container.reload()
    assert container.status == "exited"

    assert h.client.delete(f"/api/v1/services/{sid}", headers=auth).status_code == 204
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(container.id)


DANGEROUS: dict[str, dict[str, Any]] = {
    "privileged": {"privileged": True},
    "capability": {"cap_add": ["SYS_ADMIN"]},
    "host_network": {"network_mode": "host"},
    "host_pid": {"pid_mode": "host"},
    "host_ipc": {"ipc_mode": "host"},
    "host_uts": {"uts_mode": "host"},
    "device": {"devices": ["/dev/sda:/dev/sda"]},
    "docker_socket": {"volumes": [{"source": "/var/run/docker.sock", "target": "/var/run/d.sock"}]},
    "bind_outside_allowlist": {"volumes": [{"source": "/srv/data", "target": "/data"}]},
    "sensitive_path": {"volumes": [{"source": "/etc", "target": "/host-etc"}]},
    "tmpfs_over_proc": {"tmpfs": ["/tmp", "/proc"]},
    "volume_over_sys": {"volumes": [{"name": "kernel", "target": "/sys"}]},
    "privileged_host_port": {"ports": [{"container_port": 8080, "host_port": 80}]},
}


@pytest.mark.parametrize("case", sorted(DANGEROUS))
def test_each_dangerous_spec_is_refused_and_nothing_reaches_the_engine(
    h: Harness, engine: docker.DockerClient, network: str, case: str
) -> None:
    token = h.token_for(Role.ADMIN)
    name = f"bad-{case.replace('_', '-')}"
    reply = h.client.post(
        "/api/v1/services",
        json=busybox_spec(name, network, **DANGEROUS[case]),
        headers=h.bearer(token),
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "policy_violation"
    assert reply.json()["violations"]
    leftovers = engine.containers.list(all=True, filters={"label": f"wakedock.service={name}"})
    assert leftovers == []


def test_unlabelled_container_is_untouched_by_every_operation_and_reconcile(
    h: Harness, engine: docker.DockerClient, network: str
) -> None:
    bystander = engine.containers.run(
        TEST_IMAGE,
        ["sleep", "300"],
        detach=True,
        name=f"bystander-{secrets.token_hex(3)}",
        network=network,
    )
    try:
        started_at = engine.api.inspect_container(bystander.id)["State"]["StartedAt"]
        token = h.token_for(Role.ADMIN)
        sid = h.client.post(
            "/api/v1/services", json=busybox_spec("svc", network), headers=h.bearer(token)
        ).json()["id"]
        for action in ("start", "stop"):
            h.client.post(f"/api/v1/services/{sid}/{action}", headers=h.bearer(token))
        report = h.components.reconciler.run(RequestContext(actor="test"))
        assert bystander.name not in report.discovered
        names = [
            s["name"] for s in h.client.get("/api/v1/services", headers=h.bearer(token)).json()
        ]
        assert names == ["svc"]
        h.client.delete(f"/api/v1/services/{sid}", headers=h.bearer(token))
        bystander.reload()
        assert bystander.status == "running"
        assert engine.api.inspect_container(bystander.id)["State"]["StartedAt"] == started_at
    finally:
        bystander.remove(force=True)


def test_labelled_container_is_discovered_and_operated(
    h: Harness, engine: docker.DockerClient, network: str
) -> None:
    name = f"opted-{secrets.token_hex(3)}"
    opted = engine.containers.create(
        TEST_IMAGE,
        ["sleep", "300"],
        name=name,
        network=network,
        labels={
            "wakedock.enable": "true",
            "wakedock.readiness": "tcp:8080",
            "wakedock.host": "blog.example.com",
            "wakedock.idle_timeout": "10m",
        },
    )
    try:
        report = h.components.reconciler.run(RequestContext(actor="test"))
        assert report.discovered == [name]
        token = h.token_for(Role.OPERATOR)
        [svc] = [
            s
            for s in h.client.get("/api/v1/services", headers=h.bearer(token)).json()
            if s["name"] == name
        ]
        assert svc["source"] == "discovered"
        assert svc["spec"]["hosts"] == ["blog.example.com"]
        assert svc["spec"]["idle_timeout_s"] == 600
        assert (
            h.client.post(
                f"/api/v1/services/{svc['id']}/start", headers=h.bearer(token)
            ).status_code
            == 200
        )
        opted.reload()
        assert opted.status == "running"
        h.client.post(f"/api/v1/services/{svc['id']}/stop", headers=h.bearer(token))
        opted.reload()
        assert opted.status == "exited"
    finally:
        opted.remove(force=True)


def test_container_removed_by_hand_is_reconciled_to_missing_then_recreated(
    h: Harness, engine: docker.DockerClient, installation: str, network: str
) -> None:
    token = h.token_for(Role.OPERATOR)
    sid = h.client.post(
        "/api/v1/services", json=busybox_spec("gone", network), headers=h.bearer(token)
    ).json()["id"]
    container_of(engine, installation, "gone").remove(force=True)
    status = h.client.get(f"/api/v1/services/{sid}/status", headers=h.bearer(token))
    assert status.status_code == 200 and status.json()["state"] == "missing"
    report = h.components.reconciler.run(RequestContext(actor="test"))
    assert report.missing == ["gone"]
    started = h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    assert started.status_code == 200, started.text
    assert container_of(engine, installation, "gone").status == "running"


def test_docker_going_away_is_a_503_and_coming_back_recovers(
    make_harness: Callable[..., Harness], installation: str, network: str, tmp_path: Path
) -> None:
    relay = SocketRelay(tmp_path / "docker.sock")
    relay.start()
    runtime = DockerEngineRuntime(base_url=relay.url, installation=installation)
    h = make_harness(runtime=runtime)
    token = h.token_for(Role.OPERATOR)
    sid = h.client.post(
        "/api/v1/services", json=busybox_spec("flaky", network), headers=h.bearer(token)
    ).json()["id"]
    relay.stop()
    down = h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    assert down.status_code == 503
    assert down.json()["code"] == "docker_unavailable"
    assert "Docker daemon cannot be reached" in down.json()["detail"]
    assert h.client.get("/api/v1/services", headers=h.bearer(token)).status_code == 200
    assert h.client.get("/api/v1/auth/me", headers=h.bearer(token)).status_code == 200
    relay.start()
    up = h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    assert up.status_code == 200, up.text
    relay.stop()


def test_a_host_port_already_taken_is_a_409_naming_the_conflict(
    h: Harness, network: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = h.token_for(Role.OPERATOR)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = [{"container_port": 8080, "host_port": port}]
        created = h.client.post(
            "/api/v1/services",
            json=busybox_spec("clash", network, ports=ports),
            headers=h.bearer(token),
        )
        assert created.status_code == 201, created.text
        with caplog.at_level(logging.WARNING, logger="wakedock.runtime"):
            started = h.client.post(
                f"/api/v1/services/{created.json()['id']}/start", headers=h.bearer(token)
            )
    assert started.status_code == 409, started.text
    assert started.json()["code"] == "docker_conflict"
    detail = started.json()["detail"]
    assert f"127.0.0.1:{port}" in detail and "address already in use" in detail
    assert "cannot be reached" not in detail
    # Logged once, with the engine's words.
    logged = [r.getMessage() for r in caplog.records if r.name == "wakedock.runtime"]
    assert len(logged) == 1 and "address already in use" in logged[0]


def test_a_command_the_container_cannot_run_shows_in_its_status_and_logs(
    h: Harness, network: str
) -> None:
    """With an init (tini) the engine starts the container; the command then fails inside it,
    and the user reads why in the service's status and logs instead of a generic failure."""
    token = h.token_for(Role.OPERATOR)
    created = h.client.post(
        "/api/v1/services",
        json=busybox_spec("no-binary", network, command=["/no/such/binary"]),
        headers=h.bearer(token),
    )
    service = created.json()["id"]
    started = h.client.post(f"/api/v1/services/{service}/start", headers=h.bearer(token))
    assert started.status_code == 200, started.text
    deadline = time.monotonic() + 30
    status = h.client.get(f"/api/v1/services/{service}/status", headers=h.bearer(token)).json()
    while status["state"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = h.client.get(f"/api/v1/services/{service}/status", headers=h.bearer(token)).json()
    assert status["state"] == "stopped" and status["health"] == "stopped"
    assert status["exit_code"] == 127  # "command not found", as a shell says it
    logs = h.client.get(f"/api/v1/services/{service}/logs", headers=h.bearer(token))
    assert "/no/such/binary" in logs.text


def test_an_engine_socket_that_does_not_exist_is_a_503_logged_once_per_outage(
    make_harness: Callable[..., Harness],
    installation: str,
    network: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = make_harness(docker={"installation": installation, "url": f"unix://{tmp_path}/no.sock"})
    token = h.token_for(Role.OPERATOR)
    with caplog.at_level(logging.WARNING, logger="wakedock.runtime"):
        for _ in range(3):
            refused = h.client.post(
                "/api/v1/services", json=busybox_spec("nowhere", network), headers=h.bearer(token)
            )
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "docker_unavailable"
            assert "Docker daemon cannot be reached" in refused.json()["detail"]
            assert refused.headers["retry-after"]
    logged = [r.getMessage() for r in caplog.records if r.name == "wakedock.runtime"]
    assert len(logged) == 1 and "cannot be reached" in logged[0]
    health = h.client.get("/api/v1/health")
    assert health.status_code == 503
    assert health.json()["components"]["container_engine"] == "down"
    assert "no.sock" not in health.text


def test_cli_adds_starts_and_cis_checks_a_service(
    tmp_path: Path, engine: docker.DockerClient, installation: str, network: str
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    spec_file = tmp_path / "app.yaml"
    spec_file.write_text(yaml.safe_dump(busybox_spec("cli-app", network)))
    added = run_cli(data, "service", "add", str(spec_file), env=env)
    assert added.returncode == 0, added.stderr
    assert "created service cli-app" in added.stdout
    assert "creating the hardened container" in added.stderr
    started = run_cli(data, "service", "start", "cli-app", env=env)
    assert started.returncode == 0 and "cli-app: running" in started.stdout
    listed = run_cli(data, "service", "list", env=env)
    assert "cli-app" in listed.stdout and "running" in listed.stdout
    inspected = run_cli(data, "service", "inspect", "cli-app", env=env)
    assert '"state": "running"' in inspected.stdout

    checked = run_cli(data, "cis-check", "cli-app", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for cis_id in ("5.4", "5.5", "5.13", "5.14", "5.15", "5.26", "5.27", "5.29", "5.32"):
        assert f"[PASS] {cis_id} " in checked.stdout
    assert "[FAIL]" not in checked.stdout

    # A container opted in by its owner but launched unsafely: cis-check says so, exit 1.
    unsafe = engine.containers.create(
        TEST_IMAGE,
        ["sleep", "300"],
        name=f"unsafe-{secrets.token_hex(3)}",
        network=network,
        privileged=True,
        labels={
            "wakedock.enable": "true",
            "wakedock.readiness": "tcp:80",
            "wakedock.name": "unsafe",
        },
    )
    try:
        assert run_cli(data, "service", "reconcile", env=env).returncode == 0
        flagged = run_cli(data, "cis-check", "unsafe", env=env)
        assert flagged.returncode == 1
        assert "[FAIL] 5.5 " in flagged.stdout and "[FAIL] 5.4 " in flagged.stdout
    finally:
        unsafe.remove(force=True)

    stopped = run_cli(data, "service", "stop", "cli-app", env=env)
    assert stopped.returncode == 0 and "cli-app: stopped" in stopped.stdout
    refused = tmp_path / "bad.yaml"
    refused.write_text(
        yaml.safe_dump(busybox_spec("cli-bad", network, privileged=True, pid_mode="host"))
    )
    denied = run_cli(data, "service", "add", str(refused), env=env)
    assert denied.returncode == 1
    assert "privileged" in denied.stderr and "pid_mode" in denied.stderr


def test_serve_reconciles_at_start_up(
    tmp_path: Path, engine: docker.DockerClient, installation: str, network: str
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    add_by_cli(data, env, busybox_spec("boot-app", network))
    container_of(engine, installation, "boot-app").remove(force=True)
    name = f"boot-opted-{secrets.token_hex(3)}"
    opted = engine.containers.create(
        TEST_IMAGE,
        ["sleep", "60"],
        name=name,
        network=network,
        labels={"wakedock.enable": "true", "wakedock.readiness": "tcp:80"},
    )
    try:
        with wakedock_server(data, env=env) as server:
            wait_for(lambda: "discovered" in server.log(), "the start-up reconciliation", 30)
            log = server.log()
        assert re.search(r"1 service\(s\) checked, 1 missing, [1-9][0-9]* discovered", log), log
        listed = run_cli(data, "service", "list", env=env).stdout
        assert "boot-app" in listed and "missing" in listed
        assert name in listed and "discovered" in listed
    finally:
        opted.remove(force=True)
