"""The users API as an admin uses it, and its guard rails."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
from sqlalchemy import select

from conftest import Harness, strong_password
from wakedock.audit.models import AuditEvent
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role


def _events(harness: Harness, type_: str) -> list[AuditEvent]:
    with harness.components.db() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_)).scalars())


def test_create_list_search_update_delete(harness: Harness, admin_token: str) -> None:
    auth = harness.bearer(admin_token)
    created = harness.client.post(
        "/api/v1/users",
        headers=auth,
        json={
            "username": "Carol",
            "password": strong_password(),
            "role": "developer",
            "email": "carol@example.com",
        },
    )
    assert created.status_code == 201, created.text
    carol = created.json()
    assert carol["username"] == "carol" and carol["role"] == "developer"
    assert set(carol) == {"id", "username", "email", "role", "disabled", "created_at"}

    found = harness.client.get("/api/v1/users", params={"search": "CAR"}, headers=auth).json()
    assert [u["username"] for u in found] == ["carol"]
    by_email = harness.client.get("/api/v1/users", params={"search": "carol@ex"}, headers=auth)
    assert [u["username"] for u in by_email.json()] == ["carol"]

    changed = harness.client.patch(
        f"/api/v1/users/{carol['id']}", headers=auth, json={"role": "operator"}
    )
    assert changed.status_code == 200 and changed.json()["role"] == "operator"
    assert [e.target for e in _events(harness, "role_change")] == ["carol"]

    gone = harness.client.delete(f"/api/v1/users/{carol['id']}", headers=auth)
    assert gone.status_code == 204
    assert harness.client.get(f"/api/v1/users/{carol['id']}", headers=auth).status_code == 404
    assert [e.type for e in _events(harness, "user_delete")] == ["user_delete"]


def test_duplicate_username_is_a_conflict(harness: Harness, admin_token: str) -> None:
    body = {"username": "dave", "password": strong_password(), "role": "viewer"}
    auth = harness.bearer(admin_token)
    assert harness.client.post("/api/v1/users", headers=auth, json=body).status_code == 201
    again = harness.client.post("/api/v1/users", headers=auth, json={**body, "username": "DAVE"})
    assert again.status_code == 409 and again.json()["code"] == "conflict"


# Every combination of other changes sent with an e-mail that is already taken.
_OTHER_CHANGES: dict[str, Any] = {
    "role": "operator",
    "disabled": True,
    "password": strong_password(),
}
_COMBINATIONS = [
    dict(combo)
    for n in range(len(_OTHER_CHANGES) + 1)
    for combo in combinations(_OTHER_CHANGES.items(), n)
]


@pytest.mark.parametrize("others", _COMBINATIONS, ids=lambda c: "+".join(c) or "email-only")
def test_an_email_in_use_is_a_409_whatever_else_changes(
    harness: Harness, admin_token: str, others: dict[str, Any]
) -> None:
    auth = harness.bearer(admin_token)
    harness.create_user("jill", Role.VIEWER, email="jill@example.com")
    name, password = harness.create_user("kate", Role.DEVELOPER, email="kate@example.com")
    kate_token = harness.login(name, password)["access_token"]
    kate = harness.client.get("/api/v1/auth/me", headers=harness.bearer(kate_token)).json()

    reply = harness.client.patch(
        f"/api/v1/users/{kate['id']}", headers=auth, json={"email": "jill@example.com", **others}
    )

    assert reply.status_code == 409, reply.text
    assert reply.json()["code"] == "conflict"
    # Nothing else happened: same profile, the session lives, the old password still works.
    after = harness.client.get(f"/api/v1/users/{kate['id']}", headers=auth).json()
    assert (after["email"], after["role"], after["disabled"]) == (
        "kate@example.com",
        "developer",
        False,
    )
    assert harness.client.get("/api/v1/auth/me", headers=harness.bearer(kate_token)).is_success
    assert harness.login(name, password)["user"]["username"] == "kate"


def test_weak_password_names_every_reason(harness: Harness, admin_token: str) -> None:
    response = harness.client.post(
        "/api/v1/users",
        headers=harness.bearer(admin_token),
        json={"username": "erin", "password": "erin2024", "role": "viewer"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "password_rejected"
    assert "password does not meet security requirements" in body["detail"]
    assert any("at least 12" in r for r in body["reasons"])
    assert any("username" in r for r in body["reasons"])


def test_unknown_field_and_bad_role_are_422(harness: Harness, admin_token: str) -> None:
    auth = harness.bearer(admin_token)
    bad_role = harness.client.post(
        "/api/v1/users",
        headers=auth,
        json={"username": "frank", "password": strong_password(), "role": "root"},
    )
    assert bad_role.status_code == 422
    extra = harness.client.post(
        "/api/v1/users",
        headers=auth,
        json={
            "username": "frank",
            "password": strong_password(),
            "role": "viewer",
            "is_admin": True,
        },
    )
    assert extra.status_code == 422
    assert ["body", "is_admin"] in [e["loc"] for e in extra.json()["detail"]]


def test_xss_username_refused_not_echoed(harness: Harness, admin_token: str) -> None:
    payload = "<script>alert('xss')</script>"
    response = harness.client.post(
        "/api/v1/users",
        headers=harness.bearer(admin_token),
        json={"username": payload, "password": strong_password(), "role": "viewer"},
    )
    assert response.status_code == 422
    assert "<script>" not in response.text


def test_last_admin_cannot_be_removed(harness: Harness, admin_token: str) -> None:
    auth = harness.bearer(admin_token)
    me = harness.client.get("/api/v1/auth/me", headers=auth).json()
    demote = harness.client.patch(
        f"/api/v1/users/{me['id']}", headers=auth, json={"role": "viewer"}
    )
    assert demote.status_code == 409
    disable = harness.client.patch(
        f"/api/v1/users/{me['id']}", headers=auth, json={"disabled": True}
    )
    assert disable.status_code == 409
    delete = harness.client.delete(f"/api/v1/users/{me['id']}", headers=auth)
    assert delete.status_code == 409
    assert harness.client.get("/api/v1/auth/me", headers=auth).json()["role"] == "admin"


def test_admin_password_reset_revokes_sessions(harness: Harness, admin_token: str) -> None:
    name, password = harness.create_user("gina", Role.DEVELOPER)
    token = harness.login(name, password)["access_token"]
    gina = harness.client.get("/api/v1/auth/me", headers=harness.bearer(token)).json()
    new_password = strong_password()
    reset = harness.client.patch(
        f"/api/v1/users/{gina['id']}",
        headers=harness.bearer(admin_token),
        json={"password": new_password},
    )
    assert reset.status_code == 200
    assert harness.client.get("/api/v1/auth/me", headers=harness.bearer(token)).status_code == 401
    assert harness.login(name, new_password)["user"]["username"] == "gina"


def test_audit_rows_name_the_acting_user(harness: Harness, admin_token: str) -> None:
    harness.client.post(
        "/api/v1/users",
        headers=harness.bearer(admin_token),
        json={"username": "hank", "password": strong_password(), "role": "viewer"},
    )
    harness.client.post("/api/v1/auth/logout", headers=harness.bearer(admin_token))
    created = [e for e in _events(harness, "user_create") if e.target == "hank"]
    assert [(e.actor, e.ip) for e in created] == [("admin", "203.0.113.10")]
    assert [(e.actor, e.outcome) for e in _events(harness, "logout")] == [("admin", "success")]


def test_stale_mfa_blocks_role_change_and_is_audited(make_harness) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    harness = make_harness(clock=clock)
    name, password = harness.create_user("boss", Role.ADMIN)
    token = harness.login(name, password)["access_token"]  # enrols: MFA proven now
    target, _ = harness.create_user("ivy")
    ivy = harness.client.get(
        "/api/v1/users", params={"search": target}, headers=harness.bearer(token)
    ).json()[0]
    clock.advance(301)
    refused = harness.client.patch(
        f"/api/v1/users/{ivy['id']}", headers=harness.bearer(token), json={"role": "operator"}
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "step_up_required"
    denials = [e for e in _events(harness, "forbidden_access") if "step-up" in e.details]
    assert [(e.actor, e.outcome) for e in denials] == [("boss", "denied")]
    step_up = harness.client.post(
        "/api/v1/auth/mfa/step-up",
        headers=harness.bearer(token),
        json={"code": harness.totp_code(name)},
    )
    assert step_up.status_code == 200
    granted = harness.client.patch(
        f"/api/v1/users/{ivy['id']}", headers=harness.bearer(token), json={"role": "operator"}
    )
    assert granted.status_code == 200
    assert granted.json()["role"] == "operator"
