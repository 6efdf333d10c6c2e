"""Stopping and removing services on the real Docker engine: an init forwards the stop signal
(no SIGKILL after the timeout), the spec's stop signal and timeout reach the container, a stopped
service reports health `stopped`, and a discovered service whose container was deleted can be
removed through the API and the CLI (audited), while one whose container exists cannot; and a
labelled container publishing its port on 127.0.0.1, as the docs say, is woken and proxied."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from sqlalchemy import select

from conftest import Harness
from support.docker_images import TEST_IMAGE
from support.engine import (  # noqa: F401 - fixtures
    add_by_cli,
    busybox_spec,
    container_of,
    database_url,
    h,
    wait_for,
)
from support.server import run_cli, wakedock_server
from wakedock.audit.models import AuditEvent
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.integration

# Ends cleanly on SIGUSR1 only, saying so in its log; any other signal kills the shell.
ON_USR1 = ["/bin/sh", "-c", "trap 'echo stopping-on-usr1; exit 0' USR1; while :; do sleep 1; done"]


def status(h: Harness, token: str, sid: int) -> dict[str, Any]:
    reply = h.client.get(f"/api/v1/services/{sid}/status", headers=h.bearer(token))
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def audit(h: Harness, type_: str) -> list[AuditEvent]:
    with transaction(h.components.db) as db:
        rows = list(db.scalars(select(AuditEvent).where(AuditEvent.type == type_)))
        db.expunge_all()
        return rows


def test_a_busybox_app_stops_on_sigterm_through_the_init_and_reports_stopped(
    h: Harness, engine: docker.DockerClient, installation: str, network: str
) -> None:
    token = h.token_for(Role.OPERATOR)
    sid = h.client.post(
        "/api/v1/services", json=busybox_spec("plain", network), headers=h.bearer(token)
    )
    sid = sid.json()["id"]
    assert h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token)).is_success
    wait_for(lambda: status(h, token, sid)["health"] == "healthy", "the service to be healthy")

    stopped = h.client.post(f"/api/v1/services/{sid}/stop", headers=h.bearer(token))
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    attrs = engine.api.inspect_container(container_of(engine, installation, "plain").id)
    assert attrs["HostConfig"]["Init"] is True
    assert attrs["Config"]["StopTimeout"] == 10
    # Ended by the forwarded SIGTERM (143), not by the SIGKILL after the timeout (137).
    assert attrs["State"]["ExitCode"] in (0, 143), attrs["State"]
    # The engine still holds the last check's result; users are told the truth instead.
    now = status(h, token, sid)
    assert (now["state"], now["health"]) == ("stopped", "stopped")


def test_the_specs_stop_signal_and_timeout_reach_the_container(
    h: Harness, engine: docker.DockerClient, installation: str, network: str
) -> None:
    token = h.token_for(Role.OPERATOR)
    body = busybox_spec(
        "usr1",
        network,
        command=ON_USR1,
        stop_signal="usr1",
        stop_timeout_s=30,
        readiness={"type": "tcp", "port": 8080},
    )
    created = h.client.post("/api/v1/services", json=body, headers=h.bearer(token))
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["stop_signal"] == "SIGUSR1"
    sid = created.json()["id"]
    container = container_of(engine, installation, "usr1")
    config = engine.api.inspect_container(container.id)["Config"]
    assert (config["StopSignal"], config["StopTimeout"]) == ("SIGUSR1", 30)

    assert h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token)).is_success
    wait_for(lambda: status(h, token, sid)["state"] == "running", "the service to run")
    assert h.client.post(f"/api/v1/services/{sid}/stop", headers=h.bearer(token)).is_success
    state = engine.api.inspect_container(container.id)["State"]
    # Only SIGUSR1 makes the app exit 0 and log this line; SIGTERM would give 143, SIGKILL 137.
    assert state["ExitCode"] == 0, state
    assert b"stopping-on-usr1" in container.logs()


def labelled_container(engine: docker.DockerClient, network: str, name: str) -> Any:
    return engine.containers.create(
        TEST_IMAGE,
        ["sleep", "300"],
        name=name,
        network=network,
        labels={"wakedock.enable": "true", "wakedock.readiness": "tcp:8080"},
    )


def test_a_discovered_service_goes_with_its_deleted_container(
    h: Harness, engine: docker.DockerClient, network: str
) -> None:
    name = f"opted-{secrets.token_hex(3)}"
    opted = labelled_container(engine, network, name)
    try:
        assert h.components.reconciler.run(RequestContext(actor="test")).discovered == [name]
        token = h.token_for(Role.OPERATOR, "olga")
        [svc] = [
            s
            for s in h.client.get("/api/v1/services", headers=h.bearer(token)).json()
            if s["name"] == name
        ]
        base = f"/api/v1/services/{svc['id']}"
        # While the labelled container exists, the service comes from it: a 409 that says how.
        kept = h.client.delete(base, headers=h.bearer(token))
        assert kept.status_code == 409 and kept.json()["code"] == "configured_by_labels"
        assert "remove the container or its wakedock.enable label" in kept.json()["detail"]
    finally:
        opted.remove(force=True)
    # Its container deleted, the service goes at the next reconciliation, audited (live
    # discovery, off in this harness, runs the same pass at once: test_live_discovery.py).
    assert h.components.reconciler.run(RequestContext(actor="test")).removed == [name]
    assert h.client.get(base, headers=h.bearer(token)).status_code == 404
    [deleted] = audit(h, "service_delete")
    assert (deleted.actor, deleted.target) == ("test", name)
    # Nothing comes back at the next reconciliation.
    assert h.components.reconciler.run(RequestContext(actor="test")).discovered == []


def test_the_cli_reconcile_removes_a_discovered_service_whose_container_was_deleted(
    tmp_path: Path, engine: docker.DockerClient, installation: str, network: str
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    name = f"cli-opted-{secrets.token_hex(3)}"
    opted = labelled_container(engine, network, name)
    try:
        assert run_cli(data, "service", "reconcile", env=env).returncode == 0
        refused = run_cli(data, "service", "remove", name, env=env)
        assert refused.returncode == 1 and "wakedock.enable label" in refused.stderr
    finally:
        opted.remove(force=True)
    assert "removed: " + name in run_cli(data, "service", "reconcile", env=env).stdout
    gone = run_cli(data, "service", "remove", name, env=env)
    assert gone.returncode == 1, gone.stdout

    # A service WakeDock created: its container goes with it.
    add_by_cli(data, env, busybox_spec("cli-made", network))
    container_id = container_of(engine, installation, "cli-made").id
    assert run_cli(data, "service", "remove", "cli-made", env=env).returncode == 0
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(container_id)

    listed = run_cli(data, "service", "list", env=env).stdout
    assert name not in listed and "cli-made" not in listed
    exported = run_cli(data, "audit", "export", "--type", "service_delete", env=env)
    rows = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    assert [r["target"] for r in rows] == [name, "cli-made"], exported.stdout
    assert all(str(r["actor"]).startswith("cli:") for r in rows)


def test_a_labelled_container_publishing_its_port_on_loopback_is_woken_and_proxied(
    tmp_path: Path, engine: docker.DockerClient, installation: str, network: str
) -> None:
    # What docs/services.md tells owners to run: the port published on 127.0.0.1 by themselves.
    name = f"blog-{secrets.token_hex(3)}"
    owned = engine.containers.create(
        TEST_IMAGE,
        ["/bin/sh", "-c", "echo labelled-app > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"],
        name=name,
        network=network,
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels={
            "wakedock.enable": "true",
            "wakedock.port": "8080",
            "wakedock.readiness": "http:8080/index.html",
            "wakedock.access": "public",
        },
    )
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    try:
        with (
            wakedock_server(data, env=env) as server,
            httpx.Client(verify=server.ssl_context(), timeout=60) as http,
        ):
            reply = http.get(f"{server.base_url}/index.html", headers={"Host": f"{name}.localhost"})
        assert reply.status_code == 200, reply.text
        assert reply.text.strip() == "labelled-app"
        owned.reload()
        assert owned.status == "running"
    finally:
        owned.remove(force=True)
