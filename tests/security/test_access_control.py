"""Access control attacks: lesser roles on every write route, CSRF against browser sessions, and
responses that must never carry hashes or secrets."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import CLIENT_IP, Harness, strong_password
from wakedock.audit.models import AuditEvent
from wakedock.auth.models import User
from wakedock.rbac.dependencies import Requires, public
from wakedock.rbac.permissions import Role
from wakedock.rbac.roles import has_permission

pytestmark = pytest.mark.security

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
COOKIE = "__Host-wakedock_session"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


def events(h: Harness, type_: str) -> list[AuditEvent]:
    with h.components.db() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_)).scalars())


def user_row(h: Harness, username: str) -> User | None:
    with h.components.db() as db:
        return db.execute(select(User).where(User.username == username)).scalar_one_or_none()


# -- the route walk -------------------------------------------------------------------------
def routes(app: FastAPI) -> Iterator[tuple[str, str, Dependant]]:
    """(method, path, dependant) of every served API route.

    app.routes holds the included routers, not their routes: iter_route_contexts flattens them
    the way FastAPI serves them (a plain isinstance(APIRoute) walk of app.routes finds nothing).
    """
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            for method in sorted(context.methods or ()):
                yield method, str(context.path_format), context.dependant


def guards(dependant: Dependant) -> list[object]:
    found: list[object] = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, Requires) or dep.call is public:
            found.append(dep.call)
        found += guards(dep)
    return found


def concrete(path: str) -> str:
    """A callable URL for a path template: every parameter becomes `1`."""
    return re.sub(r"\{[^}]+\}", "1", path)


def write_routes_denied_to(app: FastAPI, role: Role) -> list[tuple[str, str, set[str]]]:
    """Write routes a role must be refused: guarded by a permission the role lacks."""
    denied = []
    for method, path, dependant in routes(app):
        if method not in WRITE_METHODS:
            continue
        found = guards(dependant)
        assert found, f"{method} {path} declares neither a permission nor `public`"
        if public in found:
            continue
        needed = {g.permission for g in found if isinstance(g, Requires)}
        missing = {p.value for p in needed if not has_permission(role, p)}
        if missing:  # otherwise a self-service route (account:write) every role may use
            denied.append((method, path, missing))
    return denied


# -- lesser roles on every write route ------------------------------------------------------
@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER, Role.OPERATOR])
def test_write_routes_refuse_roles_without_the_permission(harness: Harness, role: Role) -> None:
    token = harness.token_for(role)
    denied = write_routes_denied_to(harness.app, role)
    for expected in [
        ("POST", "/api/v1/users"),
        ("PATCH", "/api/v1/users/{user_id}"),
        ("DELETE", "/api/v1/users/{user_id}"),
    ]:
        assert expected in {(m, p) for m, p, _ in denied}, "the route walk missed routes"
    for method, path, missing in denied:
        response = harness.client.request(
            method, concrete(path), json={}, headers=harness.bearer(token)
        )
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "permission_denied"
        assert any(p in response.json()["detail"] for p in missing)
    forbidden = events(harness, "forbidden_access")
    assert len(forbidden) == len(denied)


def test_the_walk_covers_self_service_routes_correctly(harness: Harness) -> None:
    denied = {(m, p) for m, p, _ in write_routes_denied_to(harness.app, Role.VIEWER)}
    # account:write routes stay usable by a viewer; public routes are not guarded at all.
    for own in [
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/password"),
        ("DELETE", "/api/v1/auth/sessions/{session_id}"),
        ("POST", LOGIN),
    ]:
        assert own not in denied
    # More privilege, never more refusals.
    developer = {(m, p) for m, p, _ in write_routes_denied_to(harness.app, Role.DEVELOPER)}
    assert developer <= denied
    assert write_routes_denied_to(harness.app, Role.ADMIN) == []


def test_every_guarded_route_needs_authentication(harness: Harness) -> None:
    checked = 0
    for method, path, dependant in routes(harness.app):
        if public in guards(dependant):
            continue
        response = harness.client.request(method, concrete(path), json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 8
    assert len(events(harness, "unauthorized_access")) == checked


def test_viewer_cannot_escalate_or_touch_other_accounts(
    harness: Harness, admin_credentials: tuple[str, str]
) -> None:
    name, password = harness.create_user("vic", Role.VIEWER)
    tokens = harness.login(name, password)
    auth = harness.bearer(tokens["access_token"])
    me_id = tokens["user"]["id"]
    admin = user_row(harness, admin_credentials[0])
    assert admin is not None

    promote = harness.client.patch(f"/api/v1/users/{me_id}", headers=auth, json={"role": "admin"})
    create = harness.client.post(
        "/api/v1/users",
        headers=auth,
        json={"username": "sidekick", "password": strong_password(), "role": "admin"},
    )
    disable = harness.client.patch(
        f"/api/v1/users/{admin.id}", headers=auth, json={"disabled": True}
    )
    reset = harness.client.patch(
        f"/api/v1/users/{admin.id}", headers=auth, json={"password": strong_password()}
    )
    delete = harness.client.delete(f"/api/v1/users/{admin.id}", headers=auth)
    for response in (promote, create, disable, reset, delete):
        assert response.status_code == 403, response.request.url
    assert harness.client.get(ME, headers=auth).json()["role"] == "viewer"
    assert user_row(harness, "sidekick") is None
    after = user_row(harness, admin_credentials[0])
    assert after is not None and not after.disabled and after.password_hash == admin.password_hash
    harness.login(*admin_credentials)
    # Reading users is refused too.
    assert harness.client.get("/api/v1/users", headers=auth).status_code == 403
    assert harness.client.get(f"/api/v1/users/{admin.id}", headers=auth).status_code == 403


def test_role_change_takes_effect_on_live_tokens(harness: Harness, admin_token: str) -> None:
    """A demoted admin's token must lose admin rights at once (the session cache is dropped)."""
    name, password = harness.create_user("ex-admin", Role.ADMIN)
    tokens = harness.login(name, password)
    auth = harness.bearer(tokens["access_token"])
    assert harness.client.get("/api/v1/users", headers=auth).status_code == 200  # cached
    demoted = harness.client.patch(
        f"/api/v1/users/{tokens['user']['id']}",
        headers=harness.bearer(admin_token),
        json={"role": "viewer"},
    )
    assert demoted.status_code == 200
    assert harness.client.get("/api/v1/users", headers=auth).status_code == 403


# -- CSRF on browser (cookie) sessions ------------------------------------------------------
def browser(h: Harness, port: int = 50001) -> TestClient:
    return TestClient(h.app, base_url="https://testserver", client=(CLIENT_IP, port))


def cookie_login(client: TestClient, username: str, password: str) -> Any:
    response = client.post(
        LOGIN, json={"username": username, "password": password, "mode": "cookie"}
    )
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def victim(harness: Harness) -> dict[str, Any]:
    name, password = harness.create_user("victim")
    client = browser(harness)
    response = cookie_login(client, name, password)
    return {
        "client": client,
        "csrf": response.json()["csrf_token"],
        "password": password,
        "response": response,
        "name": name,
    }


def test_cookie_login_sets_a_hardened_cookie(victim: dict[str, Any]) -> None:
    response = victim["response"]
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE}=")
    attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
    assert "httponly" in attributes and "secure" in attributes
    assert "samesite=strict" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain=") for a in attributes)
    body = response.json()
    assert "access_token" not in body and "refresh_token" not in body and body["csrf_token"]
    secret = victim["client"].cookies.get(COOKIE)
    assert secret and secret not in response.text


def test_get_needs_no_csrf_token(harness: Harness, victim: dict[str, Any]) -> None:
    client = victim["client"]
    assert client.get(ME).status_code == 200
    assert client.get("/api/v1/auth/sessions").status_code == 200
    csrf = client.get("/api/v1/auth/csrf")
    assert csrf.status_code == 200 and csrf.json()["csrf_token"] == victim["csrf"]
    assert events(harness, "csrf_failure") == []


def test_post_without_csrf_token_is_refused(harness: Harness, victim: dict[str, Any]) -> None:
    client = victim["client"]
    response = client.post("/api/v1/auth/logout")
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert client.get(ME).status_code == 200  # not logged out
    failures = events(harness, "csrf_failure")
    assert len(failures) == 1
    assert failures[0].actor == "victim" and failures[0].outcome == "denied"
    assert failures[0].target == "/api/v1/auth/logout"


def test_wrong_or_foreign_csrf_token_is_refused(harness: Harness, victim: dict[str, Any]) -> None:
    client = victim["client"]
    # The token of another browser session (the attacker's own) does not fit the victim's.
    attacker_name, attacker_password = harness.create_user("attacker")
    attacker_csrf = cookie_login(browser(harness, 50002), attacker_name, attacker_password).json()[
        "csrf_token"
    ]
    assert attacker_csrf != victim["csrf"]
    for token in [
        "",
        "x",
        "A" * 43,
        victim["csrf"][:-1],
        victim["csrf"].upper(),
        attacker_csrf,
        victim["csrf"] + "A",
    ]:
        response = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token})
        assert response.status_code == 403, token
        assert response.json()["code"] == "csrf_failed"
    assert client.get(ME).status_code == 200
    assert len(events(harness, "csrf_failure")) == 7


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "https://testserver.evil.example",
        "https://evil.example/https://testserver",
    ],
)
def test_foreign_origin_is_refused_even_with_the_right_token(
    harness: Harness, victim: dict[str, Any], origin: str
) -> None:
    client = victim["client"]
    response = client.post(
        "/api/v1/auth/logout", headers={"X-CSRF-Token": victim["csrf"], "Origin": origin}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert client.get(ME).status_code == 200
    assert len(events(harness, "csrf_failure")) == 1


def test_right_token_and_origin_succeed(harness: Harness, victim: dict[str, Any]) -> None:
    client = victim["client"]
    response = client.post(
        "/api/v1/auth/logout",
        headers={"X-CSRF-Token": victim["csrf"], "Origin": "https://testserver"},
    )
    assert response.status_code == 204
    assert client.get(ME).status_code == 401
    assert events(harness, "csrf_failure") == []


def test_password_change_through_csrf(harness: Harness, victim: dict[str, Any]) -> None:
    client = victim["client"]
    body = {"current_password": victim["password"], "new_password": strong_password()}
    forged = client.post("/api/v1/auth/password", json=body)
    assert forged.status_code == 403 and forged.json()["code"] == "csrf_failed"
    harness.login(victim["name"], victim["password"])  # unchanged
    done = client.post("/api/v1/auth/password", json=body, headers={"X-CSRF-Token": victim["csrf"]})
    assert done.status_code == 204
    harness.login(victim["name"], body["new_password"])


def test_admin_cookie_cannot_be_ridden_to_disable_a_user(
    harness: Harness, admin_credentials: tuple[str, str]
) -> None:
    target, _ = harness.create_user("target")
    target_row = user_row(harness, target)
    assert target_row is not None
    # The admin enrols MFA (token login), then signs in from a browser: password + code.
    harness.login(*admin_credentials)
    admin = browser(harness)
    challenge = cookie_login(admin, *admin_credentials).json()
    assert challenge["requires_mfa"] is True
    verified = admin.post(
        "/api/v1/auth/mfa/verify",
        json={
            "challenge_token": challenge["challenge_token"],
            "code": harness.totp_code(admin_credentials[0]),
            "mode": "cookie",
        },
    )
    assert verified.status_code == 200, verified.text
    csrf = verified.json()["csrf_token"]
    url = f"/api/v1/users/{target_row.id}"
    forged = admin.patch(url, json={"disabled": True})
    assert forged.status_code == 403 and forged.json()["code"] == "csrf_failed"
    still = user_row(harness, target)
    assert still is not None and not still.disabled
    done = admin.patch(url, json={"disabled": True}, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200 and done.json()["disabled"] is True


def test_cross_site_cookie_login_is_refused(harness: Harness) -> None:
    """Login CSRF: a foreign page must not plant its own (attacker's) browser session.

    A plain HTML form (urlencoded, no preflight) from https://evil.example can POST to the login
    route; the Origin header is the only defence a public route has (S3.5: CSRF protection on
    every state-changing request; opening a session is one).
    """
    name, password = harness.create_user("attacker")
    client = browser(harness, 50003)
    response = client.post(
        LOGIN,
        data={"username": name, "password": password, "mode": "cookie"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert COOKIE not in response.headers.get("set-cookie", "")
    # The same login from WakeDock's own origin works.
    same_site = client.post(
        LOGIN,
        data={"username": name, "password": password, "mode": "cookie"},
        headers={"Origin": "https://testserver"},
    )
    assert same_site.status_code == 200


# -- no hashes or secrets in responses ------------------------------------------------------
FORBIDDEN_WORDS = ("password_hash", "$argon2", "secret_hash", "token_hash", "password")


def assert_clean(text: str, *secrets: str) -> None:
    lowered = text.lower()
    for word in FORBIDDEN_WORDS:
        assert word not in lowered, word
    for secret in secrets:
        assert secret not in text


def test_responses_never_contain_hashes(
    harness: Harness,
    admin_credentials: tuple[str, str],
) -> None:
    name, password = harness.create_user("hashless", email="hashless@example.com")
    row = user_row(harness, name)
    admin_row = user_row(harness, admin_credentials[0])
    assert row is not None and admin_row is not None
    hashes = (row.password_hash, admin_row.password_hash, row.password_hash.split("$")[-1])

    login = harness.client.post(LOGIN, json={"username": name, "password": password})
    assert login.status_code == 200
    tokens = login.json()
    assert_clean(login.text, *hashes, password)
    refreshed = harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert_clean(
        refreshed.text, *hashes, hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()
    )
    me = harness.client.get(ME, headers=harness.bearer(tokens["access_token"]))
    assert me.status_code == 200 and set(me.json()) == {
        "id",
        "username",
        "email",
        "role",
        "disabled",
        "created_at",
    }
    assert_clean(me.text, *hashes)

    cookie = cookie_login(browser(harness), name, password)
    assert_clean(cookie.text, *hashes)

    admin = harness.bearer(harness.login(*admin_credentials)["access_token"])
    listing = harness.client.get("/api/v1/users", headers=admin)
    one = harness.client.get(f"/api/v1/users/{row.id}", headers=admin)
    created = harness.client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "fresh", "password": strong_password(), "role": "viewer"},
    )
    updated = harness.client.patch(
        f"/api/v1/users/{row.id}", headers=admin, json={"password": strong_password()}
    )
    sessions = harness.client.get("/api/v1/auth/sessions", headers=admin, params={"all": "true"})
    for response in (listing, one, created, updated, sessions):
        assert response.status_code in (200, 201), response.text
        assert_clean(response.text, *hashes)
    assert {u["username"] for u in listing.json()} == {"admin", "hashless"}


def test_audit_trail_never_holds_passwords_or_tokens(harness: Harness) -> None:
    name, password = harness.create_user("audited")
    harness.client.post(LOGIN, json={"username": name, "password": "wrong-" + password})
    tokens = harness.login(name, password)
    new_password = strong_password()
    harness.client.post(
        "/api/v1/auth/password",
        headers=harness.bearer(tokens["access_token"]),
        json={"current_password": password, "new_password": new_password},
    )
    harness.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    harness.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    with harness.components.db() as db:
        rows = list(db.execute(select(AuditEvent)).scalars())
    assert {"login_failure", "login_success", "password_change", "token_reuse"} <= {
        r.type for r in rows
    }
    for r in rows:
        text = " ".join(str(v) for v in (r.actor, r.target, r.details, r.user_agent))
        for secret in (
            password,
            "wrong-" + password,
            new_password,
            tokens["access_token"],
            tokens["refresh_token"],
        ):
            assert secret not in text, r.type
