"""/api/v1/services through HTTP, on an in-memory runtime (the real engine is in integration/)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.audit.models import AuditEvent
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.services.models import Service

IMAGE = "wakedock-test/busybox:1"


def spec(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "ports": [{"container_port": 8080}],
        "readiness": {"type": "http", "path": "/", "port": 8080},
        **extra,
    }


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(runtime=runtime)


def events(h: Harness, type_: str) -> list[AuditEvent]:
    with transaction(h.components.db) as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.type == type_)).all()
        db.expunge_all()
        return list(rows)


def service_rows(h: Harness) -> list[Service]:
    with transaction(h.components.db) as db:
        rows = db.scalars(select(Service)).all()
        db.expunge_all()
        return list(rows)


def create(h: Harness, token: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = h.client.post("/api/v1/services", json=body, headers=h.bearer(token))
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_developer_creates_a_stopped_hardened_service(h: Harness, runtime: FakeRuntime) -> None:
    token = h.token_for(Role.DEVELOPER, "dev")
    body = create(h, token, spec(display_name="My App"))
    assert body["name"] == "app"
    assert body["state"] == "stopped"
    assert body["display_name"] == "My App"
    [container] = runtime.containers.values()
    assert container.kwargs["cap_drop"] == ["ALL"]
    assert container.kwargs["ports"] == {"8080/tcp": ("127.0.0.1", None)}
    assert container.labels["wakedock.service"] == "app"
    [event] = events(h, "service_create")
    assert event.actor == "dev" and event.target == "app"
    listed = h.client.get("/api/v1/services", headers=h.bearer(token)).json()
    assert [s["name"] for s in listed] == ["app"]


def test_duplicate_name_is_a_409_and_leaves_one_container(h: Harness, runtime: FakeRuntime) -> None:
    token = h.token_for(Role.OPERATOR)
    create(h, token, spec())
    again = h.client.post("/api/v1/services", json=spec(), headers=h.bearer(token))
    assert again.status_code == 409
    assert again.json()["code"] == "service_exists"
    assert len(runtime.containers) == 1


@pytest.mark.parametrize(
    "name",
    [
        "<script>alert(1)</script>",
        "app; rm -rf /",
        "$(reboot)",
        "App",
        "-app",
        "a" * 64,
        "",
        "app\x00",
    ],
)
def test_bad_names_are_refused_naming_the_field_never_echoed(h: Harness, name: str) -> None:
    token = h.token_for(Role.ADMIN)
    reply = h.client.post("/api/v1/services", json=spec(name), headers=h.bearer(token))
    assert reply.status_code == 422
    assert ["body", "name"] in [e["loc"] for e in reply.json()["detail"]]
    if name:
        assert name not in reply.text
    assert service_rows(h) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image", "UPPER/case"),
        ("image", "busybox;reboot"),
        ("ports", [{"container_port": 70000}]),
        ("limits", {"memory_mb": 1}),
        ("limits", {"cpus": 0}),
        ("unknown_field", 1),
    ],
)
def test_invalid_fields_are_a_422_naming_the_field(h: Harness, field: str, value: Any) -> None:
    token = h.token_for(Role.ADMIN)
    reply = h.client.post("/api/v1/services", json=spec(**{field: value}), headers=h.bearer(token))
    assert reply.status_code == 422
    locations = [e["loc"] for e in reply.json()["detail"]]
    assert any(loc[:2] == ["body", field] for loc in locations), locations


def test_dangerous_spec_lists_every_violation_and_is_audited(
    h: Harness, runtime: FakeRuntime
) -> None:
    token = h.token_for(Role.ADMIN, "boss")
    dangerous = spec(
        privileged=True,
        cap_add=["SYS_ADMIN"],
        network_mode="host",
        devices=["/dev/sda"],
        volumes=[{"source": "/var/run/docker.sock", "target": "/sock"}],
    )
    reply = h.client.post("/api/v1/services", json=dangerous, headers=h.bearer(token))
    assert reply.status_code == 422
    body = reply.json()
    assert body["code"] == "policy_violation"
    rules = {v["rule"] for v in body["violations"]}
    assert {"privileged", "capability", "host_namespace", "device", "docker_socket"} <= rules
    assert runtime.containers == {}
    assert service_rows(h) == []
    [event] = events(h, "policy_violation")
    assert event.severity == "high" and event.outcome == "denied" and event.actor == "boss"


@pytest.mark.security
def test_kernel_filesystem_mounts_and_privileged_ports_refused_in_one_422(
    h: Harness, runtime: FakeRuntime
) -> None:
    token = h.token_for(Role.ADMIN, "boss")
    dangerous = spec(
        tmpfs=["/tmp", "/proc"],
        volumes=[{"name": "data", "target": "/sys/kernel"}, {"name": "dev", "target": "/dev"}],
        ports=[{"container_port": 8080, "host_port": 80}],
    )
    reply = h.client.post("/api/v1/services", json=dangerous, headers=h.bearer(token))
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["code"] == "policy_violation"
    assert {(v["field"], v["rule"]) for v in body["violations"]} == {
        ("tmpfs[1]", "kernel_filesystem"),
        ("volumes[0].target", "kernel_filesystem"),
        ("volumes[1].target", "kernel_filesystem"),
        ("ports[0].host_port", "privileged_port"),
    }
    assert runtime.containers == {} and service_rows(h) == []
    [event] = events(h, "policy_violation")
    assert event.severity == "high" and event.outcome == "denied"


def test_an_admin_may_allow_privileged_host_ports(
    make_harness: Callable[..., Harness], runtime: FakeRuntime
) -> None:
    h = make_harness(runtime=runtime, docker={"allow_privileged_host_ports": True})
    token = h.token_for(Role.OPERATOR)
    create(h, token, spec(ports=[{"container_port": 8080, "host_port": 80}]))
    # Mounts over /proc stay refused whatever the setting.
    reply = h.client.post("/api/v1/services", json=spec("two", tmpfs=["/proc"]),
                          headers=h.bearer(token))  # fmt: skip
    assert reply.status_code == 422


def test_missing_image_is_a_422_naming_the_field(h: Harness) -> None:
    token = h.token_for(Role.ADMIN)
    reply = h.client.post(
        "/api/v1/services", json=spec(image="nothere/app:2"), headers=h.bearer(token)
    )
    assert reply.status_code == 422
    assert reply.json()["code"] == "image_missing"
    # The field, not the value: an error never repeats what the client sent.
    assert reply.json()["field"] == "image"
    assert "nothere" not in reply.text
    assert service_rows(h) == []


def test_docker_down_is_a_503_and_everything_else_keeps_working(
    h: Harness, runtime: FakeRuntime
) -> None:
    token = h.token_for(Role.ADMIN)
    created = create(h, token, spec())
    runtime.down = True
    for method, path in [
        ("POST", "/api/v1/services"),
        ("POST", f"/api/v1/services/{created['id']}/start"),
        ("GET", f"/api/v1/services/{created['id']}/status"),
    ]:
        reply = h.client.request(
            method, path, json=spec("other") if method == "POST" else None, headers=h.bearer(token)
        )
        assert reply.status_code == 503, (path, reply.text)
        assert reply.json()["code"] == "docker_unavailable"
        assert "Docker daemon" in reply.json()["detail"]
    # Stored data and the rest of the API are still served.
    assert h.client.get("/api/v1/services", headers=h.bearer(token)).status_code == 200
    assert h.client.get("/api/v1/users", headers=h.bearer(token)).status_code == 200
    health = h.client.get("/api/v1/health")
    assert health.status_code == 503
    assert health.json()["components"]["container_engine"] == "down"
    assert health.json()["components"]["database"] == "ok"
    assert h.client.get("/api/v1/health/live").status_code == 200


def test_lifecycle_start_status_stats_logs_stop(h: Harness, runtime: FakeRuntime) -> None:
    token = h.token_for(Role.DEVELOPER, "dev")
    sid = create(h, token, spec())["id"]
    started = h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    assert started.status_code == 200 and started.json()["state"] == "running"
    status = h.client.get(f"/api/v1/services/{sid}/status", headers=h.bearer(token)).json()
    assert status["state"] == "running" and status["health"] == "healthy"
    stats = h.client.get(f"/api/v1/services/{sid}/stats", headers=h.bearer(token)).json()
    assert stats["memory_bytes"] == 50 * 2**20
    assert stats["memory_percent"] == pytest.approx(19.53, abs=0.01)
    logs = h.client.get(f"/api/v1/services/{sid}/logs?tail=3", headers=h.bearer(token))
    assert logs.text.splitlines() == ["line 0", "line 1", "line 2"]
    assert logs.headers["content-type"].startswith("text/plain")
    stopped = h.client.post(f"/api/v1/services/{sid}/stop", headers=h.bearer(token)).json()
    assert stopped["state"] == "stopped" and stopped["stop_reason"] == "manual"
    assert [e.type for e in events(h, "service_start")] == ["service_start"]
    [stop] = events(h, "service_stop")
    assert '"reason": "manual"' in stop.details
    not_running = h.client.get(f"/api/v1/services/{sid}/stats", headers=h.bearer(token))
    assert not_running.status_code == 409


def test_ownership_developers_own_operators_all_viewers_read(h: Harness) -> None:
    alice = h.token_for(Role.DEVELOPER, "alice")
    bob = h.token_for(Role.DEVELOPER, "bob")
    viewer = h.token_for(Role.VIEWER)
    operator = h.token_for(Role.OPERATOR)
    sid = create(h, alice, spec())["id"]
    base = f"/api/v1/services/{sid}"
    for method, path, body in [
        ("POST", f"{base}/start", None),
        ("POST", f"{base}/stop", None),
        ("PATCH", base, {"idle_timeout_s": 60}),
        ("DELETE", base, None),
        ("GET", f"{base}/logs", None),
    ]:
        reply = h.client.request(method, path, json=body, headers=h.bearer(bob))
        assert reply.status_code == 403, (method, path)
        assert reply.json()["code"] == "not_service_owner"
        as_viewer = h.client.request(method, path, json=body, headers=h.bearer(viewer))
        assert as_viewer.status_code == 403, (method, path)
    assert h.client.get(base, headers=h.bearer(viewer)).status_code == 200
    assert h.client.get(f"{base}/status", headers=h.bearer(viewer)).status_code == 200
    assert (
        h.client.post("/api/v1/services", json=spec("v"), headers=h.bearer(viewer)).status_code
        == 403
    )
    assert h.client.post(f"{base}/start", headers=h.bearer(operator)).status_code == 200
    assert h.client.post(f"{base}/start", headers=h.bearer(alice)).status_code == 200


def test_patch_recreates_the_container_and_keeps_it_running(
    h: Harness, runtime: FakeRuntime
) -> None:
    token = h.token_for(Role.DEVELOPER)
    sid = create(h, token, spec())["id"]
    h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    [old] = runtime.containers
    reply = h.client.patch(
        f"/api/v1/services/{sid}", json={"limits": {"memory_mb": 128}}, headers=h.bearer(token)
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["spec"]["limits"]["memory_mb"] == 128
    [new] = runtime.containers
    assert new != old
    assert runtime.containers[new].kwargs["mem_limit"] == "128m"
    assert runtime.containers[new].state.value == "running"
    assert len(events(h, "service_update")) == 1


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"name": "renamed"}, "invalid_spec"),
        ({"bogus": 1}, "invalid_spec"),
        ({"limits": {"memory_mb": "lots"}}, "invalid_spec"),
        ({"privileged": True}, "policy_violation"),
    ],
)
def test_bad_patches_are_refused_and_change_nothing(
    h: Harness, runtime: FakeRuntime, changes: dict[str, Any], code: str
) -> None:
    token = h.token_for(Role.ADMIN)
    sid = create(h, token, spec())["id"]
    before = set(runtime.containers)
    reply = h.client.patch(f"/api/v1/services/{sid}", json=changes, headers=h.bearer(token))
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == code
    assert set(runtime.containers) == before
    assert (
        h.client.get(f"/api/v1/services/{sid}", headers=h.bearer(token)).json()["spec"][
            "privileged"
        ]
        is False
    )


def test_writable_root_only_by_an_admin_and_audited(h: Harness, runtime: FakeRuntime) -> None:
    dev = h.token_for(Role.DEVELOPER, "dev")
    admin = h.token_for(Role.ADMIN, "root-admin")
    refused = h.client.post(
        "/api/v1/services", json=spec(read_only_root=False), headers=h.bearer(dev)
    )
    assert refused.status_code == 422
    assert [v["rule"] for v in refused.json()["violations"]] == ["writable_root"]
    sid = create(h, dev, spec())["id"]
    granted = h.client.patch(
        f"/api/v1/services/{sid}", json={"read_only_root": False}, headers=h.bearer(admin)
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["writable_root_granted"] is True
    [relaxation] = events(h, "policy_relaxation")
    assert relaxation.actor == "root-admin" and relaxation.target == "app"
    [container] = runtime.containers.values()
    assert container.kwargs["read_only"] is False
    # The owner can keep editing the granted service without losing (or re-granting) it.
    edited = h.client.patch(
        f"/api/v1/services/{sid}", json={"idle_timeout_s": 120}, headers=h.bearer(dev)
    )
    assert edited.status_code == 200, edited.text
    assert len(events(h, "policy_relaxation")) == 1


def test_delete_removes_the_container_and_respects_dependents(
    h: Harness, runtime: FakeRuntime
) -> None:
    token = h.token_for(Role.OPERATOR)
    db_id = create(h, token, spec("db"))["id"]
    app_id = create(h, token, spec("web", depends_on=["db"]))["id"]
    blocked = h.client.delete(f"/api/v1/services/{db_id}", headers=h.bearer(token))
    assert blocked.status_code == 409 and blocked.json()["dependents"] == ["web"]
    assert h.client.delete(f"/api/v1/services/{app_id}", headers=h.bearer(token)).status_code == 204
    assert h.client.delete(f"/api/v1/services/{db_id}", headers=h.bearer(token)).status_code == 204
    assert runtime.containers == {}
    assert h.client.get(f"/api/v1/services/{db_id}", headers=h.bearer(token)).status_code == 404
    assert len(events(h, "service_delete")) == 2


def test_unknown_dependency_is_refused(h: Harness) -> None:
    token = h.token_for(Role.OPERATOR)
    reply = h.client.post(
        "/api/v1/services", json=spec(depends_on=["ghost"]), headers=h.bearer(token)
    )
    assert reply.status_code == 422
    # Which entry, by position: an error never repeats what the client sent.
    assert reply.json()["unknown"] == ["depends_on[0]"]
    assert "ghost" not in reply.text


def test_dependency_cycles_are_refused(h: Harness) -> None:
    token = h.token_for(Role.OPERATOR)
    create(h, token, spec("a"))
    b = create(h, token, spec("b", depends_on=["a"]))
    c = create(h, token, spec("c", depends_on=["b"]))
    a_id = h.client.get("/api/v1/services", headers=h.bearer(token)).json()[0]["id"]
    cycle = h.client.patch(
        f"/api/v1/services/{a_id}", json={"depends_on": ["c"]}, headers=h.bearer(token)
    )
    assert cycle.status_code == 422
    assert "cycle" in cycle.json()["detail"]
    assert b["spec"]["depends_on"] == ["a"] and c["spec"]["depends_on"] == ["b"]
