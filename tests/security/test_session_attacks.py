"""Attacks on sessions: refresh-token theft, idle and absolute expiry, revocation on account events,
and reaching into another user's sessions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from conftest import Harness, strong_password
from support.clocked import clock, h  # noqa: F401 - fixtures
from wakedock.audit.models import AuditEvent
from wakedock.auth.models import UserSession
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"
SESSIONS = "/api/v1/auth/sessions"
COOKIE = "__Host-wakedock_session"


def events(h: Harness, type_: str) -> list[AuditEvent]:
    with h.components.db() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_)).scalars())


def session_row(h: Harness, session_id: str) -> UserSession:
    with h.components.db() as db:
        row = db.get(UserSession, session_id)
        assert row is not None
        return row


def me(h: Harness, token: str) -> int:
    return h.client.get(ME, headers=h.bearer(token)).status_code


def refresh(h: Harness, refresh_token: str) -> Any:
    return h.client.post(REFRESH, json={"refresh_token": refresh_token})


def wait(h: Harness, clock: FakeClock, seconds: float) -> None:
    """Let time pass. Real time passes too, so the 2-second validation cache has run out."""
    clock.advance(seconds)
    h.components.sessions.forget()


# -- refresh rotation and reuse detection --------------------------------------------------
def test_refresh_rotates_the_pair(h: Harness) -> None:
    name, password = h.create_user("rita")
    first = h.login(name, password)
    response = refresh(h, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["session_id"] == first["session_id"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert me(h, second["access_token"]) == 200
    # The next rotation works with the new refresh token.
    assert refresh(h, second["refresh_token"]).status_code == 200


def test_replayed_refresh_token_revokes_the_whole_session(h: Harness) -> None:
    name, password = h.create_user("rita")
    stolen = h.login(name, password)
    legit = refresh(h, stolen["refresh_token"]).json()
    assert me(h, legit["access_token"]) == 200  # in the validation cache from now on

    replay = refresh(h, stolen["refresh_token"])
    assert replay.status_code == 401
    assert "access_token" not in replay.json()

    # Everything of that session is dead, the legitimate rotation's pair included.
    assert me(h, legit["access_token"]) == 401
    assert me(h, stolen["access_token"]) == 401
    assert refresh(h, legit["refresh_token"]).status_code == 401
    row = session_row(h, stolen["session_id"])
    assert row.revoked and row.revoked_reason == "refresh_token_reuse"

    reuse = events(h, "token_reuse")
    assert len(reuse) == 1
    assert reuse[0].severity == "high"
    assert reuse[0].actor == "rita"
    assert json.loads(reuse[0].details)["session"] == stolen["session_id"]
    # The audit trail never holds the token itself.
    for event in reuse:
        assert stolen["refresh_token"] not in (event.details + (event.target or ""))


def test_reuse_of_one_session_leaves_other_sessions_alone(h: Harness) -> None:
    name, password = h.create_user("rita")
    phone = h.login(name, password)
    laptop = h.login(name, password)
    refresh(h, phone["refresh_token"])
    assert refresh(h, phone["refresh_token"]).status_code == 401
    assert me(h, laptop["access_token"]) == 200


@pytest.mark.parametrize("bogus", ["x", "A" * 43, "A" * 256])
def test_unknown_refresh_token_is_refused(h: Harness, bogus: str) -> None:
    response = refresh(h, bogus)
    assert response.status_code == 401
    assert events(h, "token_reuse") == []


def test_access_token_is_not_a_refresh_token(h: Harness) -> None:
    name, password = h.create_user("rita")
    tokens = h.login(name, password)
    assert refresh(h, tokens["access_token"]).status_code in (401, 422)
    assert refresh(h, tokens["refresh_token"]).status_code == 200


# -- idle timeout and absolute expiry ------------------------------------------------------
def test_idle_timeout(make_harness: Callable[..., Harness], clock: FakeClock) -> None:
    # A one-hour access token, so that only the session's idle timeout can refuse it.
    h = make_harness(clock=clock, auth={"access_token_ttl_seconds": 3600})
    name, password = h.create_user("ida")
    active = h.login(name, password)
    idle = h.login(name, password)

    wait(h, clock, 29 * 60)
    assert me(h, active["access_token"]) == 200  # used: the idle clock restarts
    wait(h, clock, 60 + 1)  # `idle` has now been unused for 30 min + 1 s
    assert me(h, idle["access_token"]) == 401
    assert refresh(h, idle["refresh_token"]).status_code == 401
    assert me(h, active["access_token"]) == 200

    wait(h, clock, 30 * 60 + 1)
    assert me(h, active["access_token"]) == 401
    assert refresh(h, active["refresh_token"]).status_code == 401


def test_idle_timeout_of_browser_session(h: Harness, clock: FakeClock) -> None:
    name, password = h.create_user("ida")
    h.login(name, password, mode="cookie")
    assert h.client.get(ME).status_code == 200
    wait(h, clock, 30 * 60 + 1)
    assert h.client.get(ME).status_code == 401


def test_absolute_expiry_despite_constant_use(h: Harness, clock: FakeClock) -> None:
    name, password = h.create_user("abe")
    tokens = h.login(name, password)
    used_for = 0
    while used_for < 8 * 3600 - 600:
        wait(h, clock, 600)
        used_for += 600
        response = refresh(h, tokens["refresh_token"])
        assert response.status_code == 200, f"refused after {used_for} s"
        tokens = response.json()
        assert me(h, tokens["access_token"]) == 200
    wait(h, clock, 600)  # 8 h after login; the last access token is 10 minutes old
    assert me(h, tokens["access_token"]) == 401
    assert refresh(h, tokens["refresh_token"]).status_code == 401


def test_absolute_expiry_of_browser_session(h: Harness, clock: FakeClock) -> None:
    name, password = h.create_user("abe")
    h.login(name, password, mode="cookie")
    for step in range(1, 48):
        wait(h, clock, 600)
        assert h.client.get(ME).status_code == 200, f"refused after {step * 10} min"
    wait(h, clock, 600)
    assert h.client.get(ME).status_code == 401


# -- account events revoke sessions ---------------------------------------------------------
def test_password_change_revokes_other_sessions_only(h: Harness) -> None:
    name, password = h.create_user("paula")
    current = h.login(name, password)
    other = h.login(name, password)
    assert me(h, other["access_token"]) == 200  # cached

    new_password = strong_password()
    changed = h.client.post(
        "/api/v1/auth/password",
        headers=h.bearer(current["access_token"]),
        json={"current_password": password, "new_password": new_password},
    )
    assert changed.status_code == 204

    assert me(h, other["access_token"]) == 401
    assert refresh(h, other["refresh_token"]).status_code == 401
    assert session_row(h, other["session_id"]).revoked_reason == "password_change"
    assert me(h, current["access_token"]) == 200
    assert refresh(h, current["refresh_token"]).status_code == 200
    # The old password is gone, the new one works.
    old = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert old.status_code == 401
    h.login(name, new_password)


def test_wrong_current_password_changes_nothing(h: Harness) -> None:
    name, password = h.create_user("paula")
    current = h.login(name, password)
    other = h.login(name, password)
    refused = h.client.post(
        "/api/v1/auth/password",
        headers=h.bearer(current["access_token"]),
        json={"current_password": "not-" + password, "new_password": strong_password()},
    )
    assert refused.status_code == 403
    assert me(h, other["access_token"]) == 200
    h.login(name, password)


def test_admin_password_reset_revokes_all_sessions(h: Harness) -> None:
    admin_name, admin_password = h.create_user("root-admin", Role.ADMIN)
    admin_token = h.login(admin_name, admin_password)["access_token"]
    admin = h.bearer(admin_token)
    name, password = h.create_user("reset-me")
    tokens = h.login(name, password)
    assert me(h, tokens["access_token"]) == 200  # cached
    reset = h.client.patch(
        f"/api/v1/users/{tokens['user']['id']}", headers=admin, json={"password": strong_password()}
    )
    assert reset.status_code == 200
    assert me(h, tokens["access_token"]) == 401
    assert refresh(h, tokens["refresh_token"]).status_code == 401
    assert me(h, admin_token) == 200


def test_disabling_a_user_revokes_its_sessions(h: Harness) -> None:
    admin_name, admin_password = h.create_user("root-admin", Role.ADMIN)
    admin = h.bearer(h.login(admin_name, admin_password)["access_token"])
    name, password = h.create_user("dora")
    first = h.login(name, password)
    second = h.login(name, password)
    assert me(h, first["access_token"]) == 200  # cached
    user_id = first["user"]["id"]

    disabled = h.client.patch(f"/api/v1/users/{user_id}", headers=admin, json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True

    for tokens in (first, second):
        assert me(h, tokens["access_token"]) == 401
        assert refresh(h, tokens["refresh_token"]).status_code == 401
        assert session_row(h, tokens["session_id"]).revoked
    assert (
        h.client.post(
            "/api/v1/auth/login", json={"username": name, "password": password}
        ).status_code
        == 401
    )
    # Enabling the account again does not bring the old sessions back.
    enabled = h.client.patch(f"/api/v1/users/{user_id}", headers=admin, json={"disabled": False})
    assert enabled.status_code == 200
    assert me(h, first["access_token"]) == 401
    assert refresh(h, second["refresh_token"]).status_code == 401


# -- own sessions versus everyone's ---------------------------------------------------------
@pytest.fixture
def people(h: Harness) -> dict[str, Any]:
    admin_name, admin_password = h.create_user("root-admin", Role.ADMIN)
    alice_name, alice_password = h.create_user("alice")
    bob_name, bob_password = h.create_user("bob", Role.OPERATOR)
    return {
        "admin": h.login(admin_name, admin_password),
        "alice": h.login(alice_name, alice_password),
        "alice2": h.login(alice_name, alice_password),
        "bob": h.login(bob_name, bob_password),
    }


def test_user_lists_only_its_own_sessions(h: Harness, people: dict[str, Any]) -> None:
    alice = h.bearer(people["alice"]["access_token"])
    listed = h.client.get(SESSIONS, headers=alice)
    assert listed.status_code == 200
    rows = listed.json()
    assert {r["id"] for r in rows} == {
        people["alice"]["session_id"],
        people["alice2"]["session_id"],
    }
    assert [r["id"] for r in rows if r["current"]] == [people["alice"]["session_id"]]
    assert people["bob"]["session_id"] not in listed.text


def test_user_cannot_list_other_users_sessions(h: Harness, people: dict[str, Any]) -> None:
    alice = h.bearer(people["alice"]["access_token"])
    bob_id = people["bob"]["user"]["id"]
    for params in ({"user_id": bob_id}, {"all": "true"}, {"all": "true", "user_id": bob_id}):
        response = h.client.get(SESSIONS, headers=alice, params=params)
        assert response.status_code in (403, 404), params
        assert people["bob"]["session_id"] not in response.text
        assert people["admin"]["session_id"] not in response.text


def test_user_cannot_revoke_other_users_session(h: Harness, people: dict[str, Any]) -> None:
    alice = h.bearer(people["alice"]["access_token"])
    bob_session = people["bob"]["session_id"]
    assert me(h, people["bob"]["access_token"]) == 200
    other = h.client.delete(f"{SESSIONS}/{bob_session}", headers=alice)
    missing = h.client.delete(f"{SESSIONS}/{'B' * 22}", headers=alice)
    assert other.status_code == 404
    # Someone else's session looks exactly like one that does not exist.
    assert other.json() == missing.json()
    assert me(h, people["bob"]["access_token"]) == 200
    assert not session_row(h, bob_session).revoked
    # Operators do not hold sessions:revoke either.
    bob = h.bearer(people["bob"]["access_token"])
    attempt = h.client.delete(f"{SESSIONS}/{people['alice']['session_id']}", headers=bob)
    assert attempt.status_code == 404
    assert me(h, people["alice"]["access_token"]) == 200


def test_user_revokes_its_own_other_session(h: Harness, people: dict[str, Any]) -> None:
    alice = h.bearer(people["alice"]["access_token"])
    assert me(h, people["alice2"]["access_token"]) == 200
    gone = h.client.delete(f"{SESSIONS}/{people['alice2']['session_id']}", headers=alice)
    assert gone.status_code == 204
    assert me(h, people["alice2"]["access_token"]) == 401
    assert me(h, people["alice"]["access_token"]) == 200
    assert [e.target for e in events(h, "session_revoke")] == ["alice"]


def test_admin_lists_and_revokes_anyones_sessions(h: Harness, people: dict[str, Any]) -> None:
    admin = h.bearer(people["admin"]["access_token"])
    everyone = h.client.get(SESSIONS, headers=admin, params={"all": "true"})
    assert everyone.status_code == 200
    assert {r["id"] for r in everyone.json()} == {p["session_id"] for p in people.values()}

    bob_id = people["bob"]["user"]["id"]
    bobs = h.client.get(SESSIONS, headers=admin, params={"user_id": bob_id})
    assert bobs.status_code == 200
    assert [r["id"] for r in bobs.json()] == [people["bob"]["session_id"]]

    assert me(h, people["bob"]["access_token"]) == 200
    revoked = h.client.delete(f"{SESSIONS}/{people['bob']['session_id']}", headers=admin)
    assert revoked.status_code == 204
    assert me(h, people["bob"]["access_token"]) == 401
    assert session_row(h, people["bob"]["session_id"]).revoked_reason == "revoked_by_admin"
    assert h.client.get(SESSIONS, headers=admin, params={"user_id": bob_id}).json() == []


def test_sessions_api_leaks_no_secrets(h: Harness, people: dict[str, Any]) -> None:
    admin = h.bearer(people["admin"]["access_token"])
    text = h.client.get(SESSIONS, headers=admin, params={"all": "true"}).text
    for tokens in people.values():
        assert tokens["refresh_token"] not in text
        assert tokens["access_token"] not in text
    assert "secret" not in text and "hash" not in text
