"""Attacks on MFA that must fail: replayed codes (also across processes), reused backup codes,
the challenge token misused (as an access token, late, twice), brute force past the budgets,
an admin without MFA reaching the API, stale sessions doing sensitive things without step-up,
disabling MFA without a current code, reading another user's secret through any API, clock
skew beyond one step, and a sealed secret moved to another row."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from conftest import Harness
from support.clocked import h  # noqa: F401 - fixtures
from support.routes import api_routes, guards
from wakedock.audit.models import AuditEvent
from wakedock.auth.models import User, UserSession
from wakedock.clock import FakeClock
from wakedock.mfa import totp
from wakedock.rbac.dependencies import Requires, public
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
MFA = "/api/v1/auth/mfa"
OTHER_IP = "198.51.100.7"


# -- helpers --------------------------------------------------------------------------------
def mid_step_clock() -> FakeClock:
    """A FakeClock in the middle of a 30 s step: +-15 s never crosses a step by accident."""
    now = int(time.time())
    return FakeClock(datetime.fromtimestamp(now - now % 30 + 15, UTC))


@pytest.fixture
def clock() -> FakeClock:
    return mid_step_clock()


def step_now(h: Harness) -> int:
    return totp.current_step(h.components.clock.now())


def code_at(h: Harness, username: str, offset: int = 0) -> str:
    """The code of the step `offset` steps from now; recorded as used for the harness."""
    step = step_now(h) + offset
    h.last_totp_step[username] = max(h.last_totp_step.get(username, step), step)
    return pyotp.TOTP(h.mfa_secrets[username]).generate_otp(step)


def events(h: Harness, type_: str) -> list[AuditEvent]:
    with h.components.db() as db:
        rows = db.execute(
            select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.id)
        )
        return list(rows.scalars())


def failure_reasons(h: Harness) -> list[str]:
    return [json.loads(e.details)["reason"] for e in events(h, "mfa_failure")]


def db_user(h: Harness, username: str) -> User:
    with h.components.db() as db:
        user = db.execute(select(User).where(User.username == username)).scalar_one()
        db.expunge(user)
        return user


def session_count(h: Harness, username: str) -> int:
    with h.components.db() as db:
        rows = db.execute(
            select(UserSession)
            .join(User, User.id == UserSession.user_id)
            .where(User.username == username)
        )
        return len(rows.all())


def enrol(h: Harness, username: str, role: Role = Role.VIEWER) -> tuple[str, str]:
    """A user with MFA confirmed at the current step; returns (password, access token)."""
    name, password = h.create_user(username, role)
    body = h.login(name, password, enrol=False)
    token = str(body["access_token"])
    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    assert setup.status_code == 200, setup.text
    h.mfa_secrets[name] = setup.json()["secret"]
    confirm = h.client.post(
        f"{MFA}/confirm", headers=h.bearer(token), json={"code": code_at(h, name)}
    )
    assert confirm.status_code == 200, confirm.text
    h.backup_codes[name] = confirm.json()["backup_codes"]
    return password, token


def challenge(h: Harness, username: str, password: str, client: TestClient | None = None) -> str:
    response = (client or h.client).post(LOGIN, json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    assert response.json()["requires_mfa"] is True, response.text
    return str(response.json()["challenge_token"])


def verify(h: Harness, token: str, code: str, client: TestClient | None = None) -> Any:
    return (client or h.client).post(f"{MFA}/verify", json={"challenge_token": token, "code": code})


def client_from(h: Harness, ip: str) -> TestClient:
    return TestClient(h.app, base_url="https://testserver", client=(ip, 50000))


def assert_rate_limited(response: Any, window: int = 300) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "too_many_attempts"
    assert 0 < int(response.headers["Retry-After"]) <= window
    assert "access_token" not in response.text


# -- replay ---------------------------------------------------------------------------------
def test_a_used_code_cannot_be_replayed_at_verify(h: Harness, clock: FakeClock) -> None:
    name = "vera"
    password, _ = enrol(h, name)  # spends the current step
    # Within the same step, the enrolment code is already spent.
    same = verify(h, challenge(h, name, password), code_at(h, name))
    assert same.status_code == 401 and same.json()["code"] == "mfa_code_invalid"

    clock.advance(60)  # two steps later: now = enrolment + 2
    token = challenge(h, name, password)
    assert verify(h, token, code_at(h, name)).status_code == 200
    sessions = session_count(h, name)

    # The same code (same step) again, on a new challenge: refused.
    replay = verify(h, challenge(h, name, password), code_at(h, name))
    assert replay.status_code == 401 and replay.json()["code"] == "mfa_code_invalid"
    assert "access_token" not in replay.text
    # A code of an earlier step, still inside the skew window and never used itself: refused,
    # because a later step was already used.
    earlier = verify(h, challenge(h, name, password), code_at(h, name, -1))
    assert earlier.status_code == 401
    # ...also through the one-step login.
    one_step = h.client.post(
        LOGIN, json={"username": name, "password": password, "code": code_at(h, name)}
    )
    assert one_step.status_code == 401 and "access_token" not in one_step.text
    assert session_count(h, name) == sessions
    assert failure_reasons(h).count("replayed_code") == 4

    # The next step's code is fresh and works.
    assert verify(h, challenge(h, name, password), code_at(h, name, +1)).status_code == 200


def test_a_used_code_cannot_be_replayed_for_step_up(h: Harness, clock: FakeClock) -> None:
    name = "root"
    _, token = enrol(h, name, Role.ADMIN)
    clock.advance(30)
    code = code_at(h, name)
    first = h.client.post(f"{MFA}/step-up", headers=h.bearer(token), json={"code": code})
    assert first.status_code == 200, first.text
    assert first.json()["valid_for_seconds"] == 300
    marked = len(events(h, "mfa_step_up"))

    again = h.client.post(f"{MFA}/step-up", headers=h.bearer(token), json={"code": code})
    assert again.status_code == 400 and again.json()["code"] == "mfa_code_invalid"
    earlier = h.client.post(
        f"{MFA}/step-up", headers=h.bearer(token), json={"code": code_at(h, name, -1)}
    )
    assert earlier.status_code == 400
    assert len(events(h, "mfa_step_up")) == marked
    assert failure_reasons(h) == ["replayed_code", "replayed_code"]


def test_a_code_spent_by_one_process_is_refused_by_another(
    make_harness: Callable[..., Harness], clock: FakeClock
) -> None:
    # Two WakeDock instances (own caches, own rate-limit memory) on one database.
    first = make_harness(clock=clock)
    second = make_harness(clock=clock)
    name = "vera"
    password, _ = enrol(first, name)
    second.mfa_secrets[name] = first.mfa_secrets[name]
    clock.advance(30)
    code = code_at(first, name)
    token_a = challenge(first, name, password)
    token_b = challenge(second, name, password)
    assert verify(first, token_a, code).status_code == 200
    replay = verify(second, token_b, code)
    assert replay.status_code == 401, replay.text
    assert "replayed_code" in failure_reasons(second)


def test_a_backup_code_cannot_be_reused(h: Harness) -> None:
    name = "vera"
    password, token = enrol(h, name)
    code = h.backup_codes[name][0]
    assert verify(h, challenge(h, name, password), code).status_code == 200

    for attempt in (code, code.lower(), code.replace("-", "")):
        again = verify(h, challenge(h, name, password), attempt)
        assert again.status_code == 401, (attempt, again.text)
    one_step = h.client.post(LOGIN, json={"username": name, "password": password, "code": code})
    assert one_step.status_code == 401 and "access_token" not in one_step.text
    assert failure_reasons(h).count("replayed_code") == 4
    status = h.client.get(MFA, headers=h.bearer(token)).json()
    assert status["backup_codes_remaining"] == 9


# -- the challenge token --------------------------------------------------------------------
def test_the_challenge_token_is_not_an_access_token(h: Harness) -> None:
    name = "vera"
    password, _ = enrol(h, name)
    token = challenge(h, name, password)
    for method, path in [
        ("GET", ME),
        ("GET", MFA),
        ("GET", "/api/v1/auth/sessions"),
        ("POST", f"{MFA}/step-up"),
        ("POST", f"{MFA}/setup"),
        ("POST", "/api/v1/auth/logout"),
    ]:
        kwargs: dict[str, Any] = {"json": {"code": "123456"}} if method == "POST" else {}
        response = h.client.request(method, path, headers=h.bearer(token), **kwargs)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["code"] == "not_authenticated"
    # Nor is an access token a challenge token.
    access = verify(h, token, code_at(h, name, +1))
    assert access.status_code == 200
    confused = verify(h, access.json()["access_token"], code_at(h, name, +1))
    assert confused.status_code == 401
    # Nor a refresh token.
    assert verify(h, access.json()["refresh_token"], "123456").status_code == 401


def test_the_challenge_expires_after_five_minutes(h: Harness, clock: FakeClock) -> None:
    name = "vera"
    password, _ = enrol(h, name)
    # Just inside the window it works...
    early = challenge(h, name, password)
    clock.advance(299)
    assert verify(h, early, code_at(h, name)).status_code == 200

    # ...just past it, even a right fresh code is refused and no session is opened.
    late = challenge(h, name, password)
    sessions = session_count(h, name)
    clock.advance(301)
    response = verify(h, late, code_at(h, name))
    assert response.status_code == 401, response.text
    assert "access_token" not in response.text
    assert session_count(h, name) == sessions
    # The late attempt is an MFA failure like any other: audited.
    denied = [e for e in events(h, "mfa_failure") if e.outcome == "denied"]
    assert denied, "a verify with an expired challenge left no mfa_failure audit row"
    assert json.loads(denied[-1].details)["purpose"] == "login"


def test_the_challenge_is_single_use(h: Harness, clock: FakeClock) -> None:
    name = "vera"
    password, _ = enrol(h, name)
    clock.advance(30)
    token = challenge(h, name, password)
    assert verify(h, token, code_at(h, name)).status_code == 200
    sessions = session_count(h, name)
    clock.advance(30)
    again = verify(h, token, code_at(h, name))  # a fresh, valid code
    assert again.status_code == 401, again.text
    assert again.json()["code"] == "not_authenticated"
    assert session_count(h, name) == sessions
    # A backup code does not revive it either.
    assert verify(h, token, h.backup_codes[name][0]).status_code == 401


def test_a_challenge_of_one_user_does_not_take_another_users_code(h: Harness) -> None:
    password, _ = enrol(h, "alice")
    enrol(h, "bob")
    token = challenge(h, "alice", password)
    for code in (code_at(h, "bob", +1), h.backup_codes["bob"][0]):
        response = verify(h, token, code)
        assert response.status_code == 401, response.text


# -- brute force ----------------------------------------------------------------------------
def test_guessing_codes_is_stopped_after_five_failures(h: Harness) -> None:
    name = "vera"
    password, _ = enrol(h, name)
    token = challenge(h, name, password)
    for guess in ("000000", "111111", "222222", "333333", "444444"):
        response = verify(h, token, guess)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "mfa_code_invalid"
    sessions = session_count(h, name)

    # The sixth attempt is refused before checking, even with the right code...
    assert_rate_limited(verify(h, token, code_at(h, name, +1)))
    # ...on a new challenge, a backup code, the one-step login, and from another address.
    assert_rate_limited(verify(h, challenge(h, name, password), h.backup_codes[name][0]))
    assert_rate_limited(
        h.client.post(
            LOGIN, json={"username": name, "password": password, "code": code_at(h, name, +1)}
        )
    )
    other = client_from(h, OTHER_IP)
    assert_rate_limited(verify(h, challenge(h, name, password, other), code_at(h, name), other))
    assert session_count(h, name) == sessions
    limited = events(h, "rate_limit_hit")
    assert limited and all(json.loads(e.details)["scope"] == "mfa" for e in limited)
    assert len(events(h, "mfa_failure")) == 5
    # The backup code was not spent by the refused attempt.
    with h.components.db() as db:
        user = db.execute(select(User).where(User.username == name)).scalar_one()
        assert h.components.mfa.status(db, user.id).backup_codes_remaining == 10


def test_guessing_from_one_address_across_accounts_is_stopped(h: Harness) -> None:
    # 10 failures per address per 5 minutes, spread so that no account reaches its own 5.
    passwords = {name: enrol(h, name)[0] for name in ("ann", "ben", "cat", "dan")}
    for name, failures in (("ann", 4), ("ben", 4), ("cat", 2)):
        token = challenge(h, name, passwords[name])
        for _ in range(failures):
            assert verify(h, token, "000000").status_code == 401
    # dan has no failure of its own, but the address is out of budget.
    assert_rate_limited(verify(h, challenge(h, "dan", passwords["dan"]), code_at(h, "dan", +1)))
    # From another address dan gets in.
    other = client_from(h, OTHER_IP)
    ok = verify(h, challenge(h, "dan", passwords["dan"], other), code_at(h, "dan", +1), other)
    assert ok.status_code == 200, ok.text


def test_guessing_through_step_up_and_disable_spends_the_same_budget(h: Harness) -> None:
    name = "vera"
    password, token = enrol(h, name)
    for _ in range(3):
        bad = h.client.post(f"{MFA}/step-up", headers=h.bearer(token), json={"code": "000000"})
        assert bad.status_code == 400
    for _ in range(2):
        bad = h.client.post(
            f"{MFA}/disable", headers=h.bearer(token), json={"password": password, "code": "000000"}
        )
        assert bad.status_code == 400
    assert_rate_limited(
        h.client.post(
            f"{MFA}/step-up", headers=h.bearer(token), json={"code": code_at(h, name, +1)}
        )
    )
    assert_rate_limited(
        h.client.post(
            f"{MFA}/disable",
            headers=h.bearer(token),
            json={"password": password, "code": code_at(h, name, +1)},
        )
    )
    assert_rate_limited(verify(h, challenge(h, name, password), code_at(h, name, +1)))
    assert db_user(h, name).mfa_enabled is True


# -- mandatory MFA --------------------------------------------------------------------------
ENROLMENT_ROUTES = {
    ("GET", ME),
    ("POST", "/api/v1/auth/logout"),
    ("GET", MFA),
    ("POST", f"{MFA}/setup"),
    ("POST", f"{MFA}/confirm"),
}


def test_an_admin_without_mfa_can_only_enrol(h: Harness) -> None:
    name, password = h.create_user("root", Role.ADMIN)
    body = h.login(name, password, enrol=False)
    token = body["access_token"]

    users = h.client.get("/api/v1/users", headers=h.bearer(token))
    assert users.status_code == 403, users.text
    assert users.json()["code"] == "mfa_enrollment_required"
    assert "username" not in users.text
    denied = events(h, "forbidden_access")[-1]
    assert denied.actor == name and denied.target == "/api/v1/users"

    created = h.client.post(
        "/api/v1/users",
        headers=h.bearer(token),
        json={"username": "sneaky", "password": "Wd-a-very-long-passphrase-42", "role": "admin"},
    )
    assert created.status_code == 403 and created.json()["code"] == "mfa_enrollment_required"
    with h.components.db() as db:
        assert db.execute(select(User).where(User.username == "sneaky")).first() is None

    me = h.client.get(ME, headers=h.bearer(token))
    assert me.status_code == 200 and me.json()["username"] == name
    status = h.client.get(MFA, headers=h.bearer(token))
    assert status.status_code == 200
    assert status.json()["required"] is True and status.json()["enabled"] is False
    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    assert setup.status_code == 200, setup.text

    # Once enrolled, the same session reaches the admin API.
    h.mfa_secrets[name] = setup.json()["secret"]
    confirm = h.client.post(
        f"{MFA}/confirm", headers=h.bearer(token), json={"code": code_at(h, name)}
    )
    assert confirm.status_code == 200, confirm.text
    assert h.client.get("/api/v1/users", headers=h.bearer(token)).status_code == 200

    # Logout works for an unenrolled admin too.
    other = h.login(*h.create_user("root2", Role.ADMIN), enrol=False)["access_token"]
    assert h.client.post("/api/v1/auth/logout", headers=h.bearer(other)).status_code == 204
    assert h.client.get(ME, headers=h.bearer(other)).status_code == 401


def test_an_admin_without_mfa_is_refused_on_every_other_route(h: Harness) -> None:
    name, password = h.create_user("root", Role.ADMIN)
    token = h.login(name, password, enrol=False)["access_token"]
    victim, _ = h.create_user("victim", Role.VIEWER)
    victim_id = db_user(h, victim).id
    walked = []
    for route in api_routes(h.app):
        found = guards(route.dependant)
        if public in found:
            continue
        assert any(isinstance(g, Requires) for g in found), route.path
        path = route.path.replace("{user_id}", str(victim_id)).replace("{session_id}", "x" * 22)
        for method in route.methods:
            if (method, route.path) == ("POST", "/api/v1/auth/logout"):
                continue  # checked above: it would end the session walked with
            kwargs: dict[str, Any] = {} if method in {"GET", "DELETE"} else {"json": {}}
            response = h.client.request(method, path, headers=h.bearer(token), **kwargs)
            walked.append((method, route.path))
            if (method, route.path) in ENROLMENT_ROUTES:
                assert response.status_code != 403, (method, path, response.text)
            else:
                assert response.status_code == 403, (method, path, response.text)
                assert response.json()["code"] == "mfa_enrollment_required", (method, path)
    assert ("GET", "/api/v1/users") in walked and ("DELETE", "/api/v1/users/{user_id}") in walked
    # Nothing happened to the victim.
    user = db_user(h, victim)
    assert user.disabled is False and user.role == "viewer"


def test_required_roles_are_configurable(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(clock=mid_step_clock(), mfa={"required_roles": ["admin", "operator"]})
    name, password = h.create_user("ops", Role.OPERATOR)
    token = h.login(name, password, enrol=False)["access_token"]
    users = h.client.get("/api/v1/users", headers=h.bearer(token))
    assert users.status_code == 403 and users.json()["code"] == "mfa_enrollment_required"
    # A viewer (not in the list) is not forced.
    viewer = h.login(*h.create_user("plain", Role.VIEWER), enrol=False)["access_token"]
    assert h.client.get("/api/v1/auth/sessions", headers=h.bearer(viewer)).status_code == 200


# -- disable without a current code ---------------------------------------------------------
def test_a_stolen_session_cannot_disable_mfa_without_a_current_code(
    h: Harness, clock: FakeClock
) -> None:
    name = "vera"
    password, token = enrol(h, name)
    spent = code_at(h, name)  # used by the enrolment
    clock.advance(90)  # three steps later
    url = f"{MFA}/disable"
    attempts = {
        "replayed code": {"password": password, "code": spent},
        "code two steps old": {"password": password, "code": code_at(h, name, -2)},
        "code two steps ahead": {"password": password, "code": code_at(h, name, +2)},
        "no code": {"password": password, "code": ""},
        "a password as the code": {"password": password, "code": password[:32]},
        "code but wrong password": {"password": "x" + password, "code": code_at(h, name, -1)},
    }
    for label, body in attempts.items():
        response = h.client.post(url, headers=h.bearer(token), json=body)
        assert response.status_code in (400, 422), (label, response.text)
    assert db_user(h, name).mfa_enabled is True
    assert not events(h, "mfa_disable")


def test_a_backup_code_does_not_disable_mfa_and_is_not_burnt(h: Harness) -> None:
    """Disabling needs a current TOTP code: a backup code is refused (a stolen paper sheet and
    password must not turn MFA off). A refused request must not spend the backup code."""
    name = "vera"
    password, token = enrol(h, name)
    code = h.backup_codes[name][0]
    response = h.client.post(
        f"{MFA}/disable", headers=h.bearer(token), json={"password": password, "code": code}
    )
    assert response.status_code == 400, response.text
    assert db_user(h, name).mfa_enabled is True
    status = h.client.get(MFA, headers=h.bearer(token)).json()
    assert status["backup_codes_remaining"] == 10, "a refused disable spent a backup code"
    assert verify(h, challenge(h, name, password), code).status_code == 200


def test_backup_code_regeneration_needs_a_totp_code_and_does_not_burn_a_backup_code(
    h: Harness,
) -> None:
    name = "vera"
    _, token = enrol(h, name)
    code = h.backup_codes[name][0]
    response = h.client.post(f"{MFA}/backup-codes", headers=h.bearer(token), json={"code": code})
    assert response.status_code == 400, response.text
    assert not events(h, "mfa_backup_codes_regenerated")
    status = h.client.get(MFA, headers=h.bearer(token)).json()
    assert status["backup_codes_remaining"] == 10, "a refused regeneration spent a backup code"


# -- step-up --------------------------------------------------------------------------------
def test_sensitive_actions_need_a_fresh_mfa_proof(h: Harness, clock: FakeClock) -> None:
    admin, admin_password = h.create_user("root", Role.ADMIN)
    token = h.login(admin, admin_password)["access_token"]  # enrols: proof is fresh now
    ids = {}
    for name in ("promote", "block", "remove", "lost"):
        h.create_user(name, Role.VIEWER)
        ids[name] = db_user(h, name).id
    enrol(h, "mfauser")
    ids["mfauser"] = db_user(h, "mfauser").id

    clock.advance(301)
    auth = h.bearer(token)
    sensitive = {
        "role change": lambda: h.client.patch(
            f"/api/v1/users/{ids['promote']}", headers=auth, json={"role": "operator"}
        ),
        "disable user": lambda: h.client.patch(
            f"/api/v1/users/{ids['block']}", headers=auth, json={"disabled": True}
        ),
        "delete user": lambda: h.client.delete(f"/api/v1/users/{ids['remove']}", headers=auth),
        "reset mfa": lambda: h.client.delete(f"/api/v1/users/{ids['mfauser']}/mfa", headers=auth),
        "create admin": lambda: h.client.post(
            "/api/v1/users",
            headers=auth,
            json={
                "username": "newadmin",
                "password": "Wd-a-very-long-passphrase-42",
                "role": "admin",
            },
        ),
    }
    for label, action in sensitive.items():
        response = action()
        assert response.status_code == 403, (label, response.text)
        assert response.json()["code"] == "step_up_required", label
        assert "/api/v1/auth/mfa/step-up" in response.json()["detail"]
    with h.components.db() as db:
        rows = {u.username: u for u in db.execute(select(User)).scalars()}
    assert rows["promote"].role == "viewer" and rows["block"].disabled is False
    assert "remove" in rows and "newadmin" not in rows and rows["mfauser"].mfa_enabled is True
    # An ordinary edit still works without step-up.
    email = h.client.patch(
        f"/api/v1/users/{ids['lost']}", headers=auth, json={"email": "l@example.com"}
    )
    assert email.status_code == 200, email.text

    # A wrong step-up code changes nothing.
    bad = h.client.post(f"{MFA}/step-up", headers=auth, json={"code": "000000"})
    assert bad.status_code == 400
    assert sensitive["role change"]().json()["code"] == "step_up_required"

    stepped = h.client.post(f"{MFA}/step-up", headers=auth, json={"code": code_at(h, admin)})
    assert stepped.status_code == 200, stepped.text
    assert stepped.json()["valid_for_seconds"] == 300
    expected = {
        "role change": 200,
        "disable user": 200,
        "delete user": 204,
        "reset mfa": 204,
        "create admin": 201,
    }
    for label, action in sensitive.items():
        response = action()
        assert response.status_code == expected[label], (label, response.text)
    with h.components.db() as db:
        rows = {u.username: u for u in db.execute(select(User)).scalars()}
    assert rows["promote"].role == "operator" and rows["block"].disabled is True
    assert "remove" not in rows and "newadmin" in rows and rows["mfauser"].mfa_enabled is False
    [step_up] = events(h, "mfa_step_up")
    assert step_up.actor == admin

    # The proof ages out again.
    clock.advance(301)
    again = h.client.patch(f"/api/v1/users/{ids['promote']}", headers=auth, json={"role": "viewer"})
    assert again.status_code == 403 and again.json()["code"] == "step_up_required"


def test_step_up_is_per_session(h: Harness, clock: FakeClock) -> None:
    admin, admin_password = h.create_user("root", Role.ADMIN)
    first = h.login(admin, admin_password)["access_token"]
    clock.advance(30)
    second = h.login(admin, admin_password)["access_token"]
    target, _ = h.create_user("target", Role.VIEWER)
    target_id = db_user(h, target).id
    clock.advance(301)
    stepped = h.client.post(
        f"{MFA}/step-up", headers=h.bearer(first), json={"code": code_at(h, admin)}
    )
    assert stepped.status_code == 200, stepped.text
    stale = h.client.patch(
        f"/api/v1/users/{target_id}", headers=h.bearer(second), json={"role": "operator"}
    )
    assert stale.status_code == 403 and stale.json()["code"] == "step_up_required"
    fresh = h.client.patch(
        f"/api/v1/users/{target_id}", headers=h.bearer(first), json={"role": "operator"}
    )
    assert fresh.status_code == 200, fresh.text


# -- reading another user's secret ----------------------------------------------------------
def test_no_api_reveals_another_users_mfa_secret(h: Harness) -> None:
    admin, admin_password = h.create_user("root", Role.ADMIN)
    token = h.login(admin, admin_password)["access_token"]
    victim = "vera"
    victim_password, victim_token = enrol(h, victim)
    victim_id = db_user(h, victim).id
    # A second user halfway through enrolment: its pending secret must not leak either.
    pending_name, pending_password = h.create_user("halfway", Role.VIEWER)
    pending_token = h.login(pending_name, pending_password)["access_token"]
    pending = h.client.post(f"{MFA}/setup", headers=h.bearer(pending_token)).json()
    pending_id = db_user(h, pending_name).id
    victim_row, pending_row = db_user(h, victim), db_user(h, pending_name)
    assert victim_row.mfa_secret and pending_row.mfa_pending_secret

    needles = {
        "victim secret": h.mfa_secrets[victim],
        "pending secret": pending["secret"],
        "sealed secret": victim_row.mfa_secret.split(":", 1)[1][:24],
        "sealed pending secret": pending_row.mfa_pending_secret.split(":", 1)[1][:24],
        **{f"backup code {i}": code for i, code in enumerate(h.backup_codes[victim])},
    }
    needles |= {f"{k} (lower)": v.lower() for k, v in needles.items() if "secret" in k}

    bodies = {}
    for route in api_routes(h.app):
        if "GET" not in route.methods:
            continue
        for uid in (victim_id, pending_id):
            path = route.path.replace("{user_id}", str(uid))
            for query in ("", f"?user_id={uid}", "?all=true", f"?search={victim}"):
                response = h.client.get(path + query, headers=h.bearer(token))
                assert response.status_code < 500, (path, response.text)
                bodies[path + query] = response
    for extra in ("/openapi.json", "/docs", "/redoc"):
        bodies[extra] = h.client.get(extra, headers=h.bearer(token))
    # The victim's own view of its status does not re-reveal it either.
    bodies["victim status"] = h.client.get(MFA, headers=h.bearer(victim_token))
    bodies["victim me"] = h.client.get(ME, headers=h.bearer(victim_token))

    for where, response in bodies.items():
        text = response.text + json.dumps(dict(response.headers))
        for label, needle in needles.items():
            assert needle not in text, f"{label} leaked by GET {where}"
    # The walk reached the user data, so it would have seen a leak.
    assert bodies[f"/api/v1/users/{victim_id}"].status_code == 200
    assert victim in bodies[f"/api/v1/users/{victim_id}"].text
    assert bodies["/api/v1/users"].status_code == 200
    assert victim_password not in json.dumps({k: r.text for k, r in bodies.items()})


def test_setup_cannot_replace_or_reveal_an_enabled_secret(h: Harness) -> None:
    name = "vera"
    _, token = enrol(h, name)
    sealed = db_user(h, name).mfa_secret
    response = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    assert response.status_code == 409, response.text
    assert h.mfa_secrets[name] not in response.text
    assert db_user(h, name).mfa_secret == sealed


# -- clock skew -----------------------------------------------------------------------------
def test_one_step_of_clock_skew_is_accepted_two_are_not(h: Harness, clock: FakeClock) -> None:
    name = "vera"
    password, _ = enrol(h, name)
    clock.advance(300)  # ten steps on: nothing near now has been used
    for offset in (-2, +2, -3, +3):
        refused = verify(h, challenge(h, name, password), code_at(h, name, offset))
        assert refused.status_code == 401, (offset, refused.text)
    assert failure_reasons(h) == ["wrong_code"] * 4
    behind = verify(h, challenge(h, name, password), code_at(h, name, -1))
    assert behind.status_code == 200, behind.text

    clock.advance(300)
    ahead = verify(h, challenge(h, name, password), code_at(h, name, +1))
    assert ahead.status_code == 200, ahead.text


def test_enrolment_confirmation_tolerates_one_step_only(h: Harness) -> None:
    name, password = h.create_user("vera", Role.VIEWER)
    token = h.login(name, password)["access_token"]
    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    h.mfa_secrets[name] = setup.json()["secret"]
    step = step_now(h)
    for offset in (-2, +2):
        code = pyotp.TOTP(h.mfa_secrets[name]).generate_otp(step + offset)
        refused = h.client.post(f"{MFA}/confirm", headers=h.bearer(token), json={"code": code})
        assert refused.status_code == 400, (offset, refused.text)
    assert db_user(h, name).mfa_enabled is False
    ok = h.client.post(
        f"{MFA}/confirm", headers=h.bearer(token), json={"code": code_at(h, name, +1)}
    )
    assert ok.status_code == 200, ok.text


# -- sealed secrets are bound to their row --------------------------------------------------
def test_a_sealed_secret_copied_to_another_user_does_not_open(h: Harness) -> None:
    alice_password, _ = enrol(h, "alice")
    bob_password, bob_token = enrol(h, "bob")
    with h.components.db() as db, db.begin():
        sealed = db.execute(select(User.mfa_secret).where(User.username == "alice")).scalar_one()
        db.execute(update(User).where(User.username == "bob").values(mfa_secret=sealed))

    # Alice's codes do not open bob's account, and bob's own codes do not either: the sealed
    # value is bound to alice's row. A clean refusal, never a 500.
    for code in (code_at(h, "alice", +1), code_at(h, "bob", +1)):
        response = verify(h, challenge(h, "bob", bob_password), code)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "mfa_code_invalid"
        one_step = h.client.post(
            LOGIN, json={"username": "bob", "password": bob_password, "code": code}
        )
        assert one_step.status_code == 401, one_step.text
    step_up = h.client.post(
        f"{MFA}/step-up", headers=h.bearer(bob_token), json={"code": code_at(h, "alice")}
    )
    assert step_up.status_code == 400, step_up.text
    assert events(h, "mfa_failure"), "the refusals are audited"
    # Alice is unaffected.
    assert (
        verify(h, challenge(h, "alice", alice_password), code_at(h, "alice", +1)).status_code == 200
    )
