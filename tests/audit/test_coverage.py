"""Audit coverage (S8.1): every state-changing route, used as a user would, leaves an audit event,
and so does every refusal of an unauthenticated call. A new route without a recipe here fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from conftest import Harness, strong_password
from support.fake_runtime import FakeRuntime
from support.routes import api_routes
from wakedock.audit.models import AuditEvent
from wakedock.auth.models import User, UserSession
from wakedock.db import transaction
from wakedock.rbac.permissions import Role

SPEC = {"image": "wakedock-test/busybox:1", "readiness": {"type": "tcp", "port": 80}}
PUBLIC = {"/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/register",
          "/api/v1/auth/setup", "/api/v1/auth/mfa/verify", "/login", "/login/code",
          "/csp-report"}  # fmt: skip
# Browser pages that send a visitor without a session to the sign-in form (303), not a 401.
SIGN_IN_PAGES = {"/mfa/enrol", "/mfa/enrol/confirm", "/services/{name}/{action}", "/logout",
                 "/services/new", "/services/{name}/edit",
                 "/account/sessions/revoke", "/account/sessions/revoke-others",
                 "/account/password", "/account/mfa/backup-codes",
                 "/account/mfa/disable",
                 "/admin/users", "/admin/users/{name}/{action}",
                 "/admin/sessions/revoke", "/admin/sessions/revoke-user",
                 "/admin/secrets/write", "/admin/secrets/reveal",
                 "/admin/audit/verify", "/auth/proxy", "/mfa/step-up"}  # fmt: skip
SPEC_YAML = "image: wakedock-test/busybox:1\nreadiness: {type: tcp, port: 80}\n"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://testserver"}


def count(h: Harness) -> int:
    with transaction(h.components.db) as db:
        return int(db.scalar(select(func.count()).select_from(AuditEvent)) or 0)


class World:
    """What the recipes act on: an admin (MFA, fresh), users, a service."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.admin = h.bearer(h.token_for(Role.ADMIN, "root"))
        self.victim_id = self._user("victim", Role.VIEWER)
        self.service_id = h.client.post(
            "/api/v1/services", json={"name": "svc", **SPEC}, headers=self.admin
        ).json()["id"]

    def _user(self, name: str, role: Role) -> int:
        self.h.create_user(name, role)
        with transaction(self.h.components.db) as db:
            return self.h.components.users.by_username(db, name).id

    def fresh(self, role: Role = Role.DEVELOPER) -> tuple[str, str, dict[str, str]]:
        name = f"u{count(self.h)}"
        _, password = self.h.create_user(name, role, password=strong_password())
        tokens = self.h.login(name, password)
        return name, password, self.h.bearer(tokens["access_token"])

    def enrolled(self) -> tuple[str, str, dict[str, str]]:
        name, password, auth = self.fresh()
        self.h.enrol_mfa(name, auth["Authorization"].removeprefix("Bearer "))
        return name, password, auth


# Each recipe prepares what it needs (users, logins, enrolments: those are audited too), then
# returns the one call under test, so that only that call's events are counted.
Action = Callable[[], Response]


def _mfa_verify(w: World) -> Action:
    name, password, _ = w.enrolled()
    challenge = w.h.client.post(
        "/api/v1/auth/login", json={"username": name, "password": password}
    ).json()
    code = w.h.totp_code(name)
    return lambda: w.h.client.post(
        "/api/v1/auth/mfa/verify",
        json={"challenge_token": challenge["challenge_token"], "code": code},
    )


def _cookie_login_form(w: World) -> Action:
    name, password, _ = w.fresh(Role.VIEWER)
    return lambda: w.h.client.post(
        "/login",
        content=f"username={name}&password={password}".encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://testserver",
        },
        follow_redirects=False,
    )


def _browser(w: World) -> TestClient:
    return TestClient(w.h.app, base_url="https://testserver")


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field on the page"
    return found.group(1)


def _login_code_form(w: World) -> Action:
    name, password, _ = w.enrolled()
    browser = _browser(w)
    step = browser.post("/login", data={"username": name, "password": password}, headers=FORM)
    challenge, code = _hidden(step.text, "challenge"), w.h.totp_code(name)
    return lambda: browser.post(
        "/login/code",
        data={"challenge": challenge, "code": code},
        headers=FORM,
        follow_redirects=False,
    )


def _signed_in_new_admin(w: World) -> tuple[str, TestClient, str]:
    """A browser signed in as an admin who has not enrolled MFA yet, and its CSRF token."""
    name, password = w.h.create_user(f"a{count(w.h)}", Role.ADMIN, password=strong_password())
    browser = _browser(w)
    browser.post("/login", data={"username": name, "password": password}, headers=FORM)
    page = browser.get("/mfa/enrol")
    return name, browser, _hidden(page.text, "csrf_token")


def _begin_enrolment_page(w: World) -> Action:
    _, browser, csrf = _signed_in_new_admin(w)
    return lambda: browser.post("/mfa/enrol", data={"csrf_token": csrf}, headers=FORM)


def _confirm_enrolment_page(w: World) -> Action:
    name, browser, csrf = _signed_in_new_admin(w)
    scan = browser.post("/mfa/enrol", data={"csrf_token": csrf}, headers=FORM)
    shown = re.search(r'<code id="secret">([^<]*)</code>', scan.text)
    assert shown is not None, "no key on the page"
    w.h.mfa_secrets[name] = "".join(shown.group(1).split())
    code = w.h.totp_code(name)
    return lambda: browser.post(
        "/mfa/enrol/confirm", data={"csrf_token": csrf, "code": code}, headers=FORM
    )


def _account_browser(w: World, *, enrolled: bool = False) -> tuple[str, str, TestClient, str]:
    """A developer signed in on the Account page (enrolled in MFA when `enrolled`): name,
    password, the browser and the page's CSRF token."""
    name, password, auth = w.fresh()
    browser = _browser(w)
    if enrolled:
        backup = w.h.enrol_mfa(name, auth["Authorization"].removeprefix("Bearer "))
    step = browser.post("/login", data={"username": name, "password": password}, headers=FORM)
    if enrolled:
        # A backup code: the enrolment spent this step's TOTP code, the action needs the next.
        data = {"challenge": _hidden(step.text, "challenge"), "code": backup[0]}
        browser.post("/login/code", data=data, headers=FORM)
    page = browser.get("/account")
    assert page.status_code == 200, page.text
    return name, password, browser, _hidden(page.text, "csrf_token")


def _account_revoke(w: World) -> Action:
    _, _, browser, csrf = _account_browser(w)
    own = _hidden(browser.get("/account").text, "session")
    data = {"csrf_token": csrf, "session": own}
    return lambda: browser.post("/account/sessions/revoke", data=data, headers=FORM)


def _account_revoke_others(w: World) -> Action:
    name, password, browser, csrf = _account_browser(w)
    w.h.login(name, password)  # another session to end
    data = {"csrf_token": csrf}
    return lambda: browser.post("/account/sessions/revoke-others", data=data, headers=FORM)


def _account_password(w: World) -> Action:
    _, password, browser, csrf = _account_browser(w)
    data = {"csrf_token": csrf, "current_password": password, "new_password": strong_password()}
    return lambda: browser.post("/account/password", data=data, headers=FORM)


def _account_backup_codes(w: World) -> Action:
    name, _, browser, csrf = _account_browser(w, enrolled=True)
    data = {"csrf_token": csrf, "code": w.h.totp_code(name)}
    return lambda: browser.post("/account/mfa/backup-codes", data=data, headers=FORM)


def _account_disable_mfa(w: World) -> Action:
    name, password, browser, csrf = _account_browser(w, enrolled=True)
    data = {"csrf_token": csrf, "password": password, "code": w.h.totp_code(name)}
    return lambda: browser.post("/account/mfa/disable", data=data, headers=FORM)


def _console_revoke(w: World) -> Action:
    _, browser, csrf, _ = _console_admin(w)
    name, password, _ = w.fresh()
    w.h.login(name, password)
    with transaction(w.h.components.db) as db:
        sid = db.scalars(select(UserSession.id).join(User).where(User.username == name)).first()
    data = {"csrf_token": csrf, "session": sid or ""}
    return lambda: browser.post("/admin/sessions/revoke", data=data, headers=FORM)


def _console_revoke_user(w: World) -> Action:
    _, browser, csrf, _ = _console_admin(w)
    name, _, _ = w.fresh()
    data = {"csrf_token": csrf, "username": name}
    return lambda: browser.post("/admin/sessions/revoke-user", data=data, headers=FORM)


def _signed_in_operator(w: World) -> tuple[TestClient, str]:
    """A browser signed in as an operator (no MFA demanded), and its pages' CSRF token."""
    name, password = w.h.create_user(f"o{count(w.h)}", Role.OPERATOR, password=strong_password())
    browser = _browser(w)
    browser.post("/login", data={"username": name, "password": password}, headers=FORM)
    return browser, _hidden(browser.get("/services").text, "csrf_token")


def _dashboard_stop(w: World) -> Action:
    browser, csrf = _signed_in_operator(w)
    return lambda: browser.post("/services/svc/stop", data={"csrf_token": csrf}, headers=FORM)


def _new_service_form(w: World) -> Action:
    browser, csrf = _signed_in_operator(w)
    data = {"csrf_token": csrf, "mode": "yaml", "yaml": f"name: formed\n{SPEC_YAML}"}
    return lambda: browser.post("/services/new", data=data, headers=FORM)


def _edit_service_form(w: World) -> Action:
    browser, csrf = _signed_in_operator(w)
    data = {"csrf_token": csrf, "mode": "yaml", "yaml": SPEC_YAML}  # svc, now probed by TCP
    return lambda: browser.post("/services/svc/edit", data=data, headers=FORM)


def _sign_out_form(w: World) -> Action:
    browser, csrf = _signed_in_operator(w)
    return lambda: browser.post("/logout", data={"csrf_token": csrf}, headers=FORM)


def _console_admin(w: World) -> tuple[str, TestClient, str, list[str]]:
    """A browser signed in to the console as a new admin (MFA enrolled through the API, then a
    backup code at the code step: the enrolment spent this step's TOTP code): the admin's name,
    the browser, its pages' CSRF token and the unused backup codes (each a step-up proof)."""
    name, password = w.h.create_user(f"a{count(w.h)}", Role.ADMIN, password=strong_password())
    w.h.login(name, password)  # enrols MFA, as the role demands
    codes = list(w.h.backup_codes[name])
    browser = _browser(w)
    step = browser.post("/login", data={"username": name, "password": password}, headers=FORM)
    data = {"challenge": _hidden(step.text, "challenge"), "code": codes.pop()}
    browser.post("/login/code", data=data, headers=FORM)
    return name, browser, _hidden(browser.get("/admin").text, "csrf_token"), codes


def _console_create_user(w: World) -> Action:
    _, browser, csrf, _ = _console_admin(w)
    data = {"csrf_token": csrf, "username": "made", "password": strong_password(), "role": "viewer"}
    return lambda: browser.post("/admin/users", data=data, headers=FORM)


def _console_disable_user(w: World) -> Action:
    _, browser, csrf, codes = _console_admin(w)
    data = {"csrf_token": csrf, "code": codes.pop()}
    return lambda: browser.post("/admin/users/victim/disable", data=data, headers=FORM)


def _console_secret_write(w: World) -> Action:
    # The default (file) provider is read-only: the refused write is audited, as the API's.
    _, browser, csrf, _ = _console_admin(w)
    data = {"csrf_token": csrf, "path": "svc/db", "cas": "0", "value.password": "x"}
    return lambda: browser.post("/admin/secrets/write", data=data, headers=FORM)


def _console_secret_reveal(w: World) -> Action:
    name, browser, csrf, _ = _console_admin(w)
    data = {"csrf_token": csrf, "path": "svc/db", "code": w.h.totp_code(name)}
    return lambda: browser.post("/admin/secrets/reveal", data=data, headers=FORM)


def _signed_in_with_code(w: World) -> tuple[str, TestClient]:
    """A browser signed in with its code, by a user who enrolled MFA."""
    name, password, _ = w.enrolled()
    browser = _browser(w)
    step = browser.post("/login", data={"username": name, "password": password}, headers=FORM)
    signed = {"challenge": _hidden(step.text, "challenge"), "code": w.h.totp_code(name)}
    browser.post("/login/code", data=signed, headers=FORM)
    return name, browser


def _page_code(w: World) -> Action:
    """The code a page's zero-trust step-up asks for."""
    name, browser = _signed_in_with_code(w)
    page = browser.get("/mfa/step-up", params={"next": "/services"})
    data = {"csrf_token": _hidden(page.text, "csrf_token"), "code": w.h.backup_codes[name][0]}
    action = "/mfa/step-up?next=%2Fservices"
    return lambda: browser.post(action, data=data, headers=FORM, follow_redirects=False)


def _service_host_code(w: World) -> Action:
    """The code a service host's zero-trust step-up asks for, on the hand-off page."""
    name, browser = _signed_in_with_code(w)
    target = f"https://svc.{w.h.components.settings.proxy.base_domain}/"
    page = browser.get("/auth/proxy", params={"next": target, "step_up": "1"})
    data = {"csrf_token": _hidden(page.text, "csrf_token"), "code": w.h.backup_codes[name][0]}
    action = f"/auth/proxy?next={quote(target, safe='')}"
    return lambda: browser.post(action, data=data, headers=FORM, follow_redirects=False)


def _console_verify(w: World) -> Action:
    _, browser, csrf, _ = _console_admin(w)

    def verify() -> Response:
        answer = browser.post("/admin/audit/verify", data={"csrf_token": csrf}, headers=FORM)
        w.h.components.chain_checks.wait(timeout=60)
        return answer

    return verify


def _revoke_own_session(w: World) -> Action:
    _, _, auth = w.fresh()
    sessions = w.h.client.get("/api/v1/auth/sessions", headers=auth).json()
    return lambda: w.h.client.delete(f"/api/v1/auth/sessions/{sessions[0]['id']}", headers=auth)


def _refresh(w: World) -> Action:
    token = w.h.login(*w.h.create_user("r1", Role.VIEWER))["refresh_token"]
    return lambda: w.h.client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def _as_fresh_user(
    method: str, path: str, body: dict[str, Any] | None = None
) -> Callable[[World], Action]:
    def prepare(w: World) -> Action:
        auth = w.fresh()[2]
        return lambda: w.h.client.request(method, path, json=body, headers=auth)

    return prepare


def _password(w: World) -> Action:
    _, password, auth = w.fresh()
    body = {"current_password": password, "new_password": strong_password()}
    return lambda: w.h.client.post("/api/v1/auth/password", json=body, headers=auth)


def _with_code(path: str, with_password: bool = False) -> Callable[[World], Action]:
    def prepare(w: World) -> Action:
        name, password, auth = w.enrolled()
        body = {"code": w.h.totp_code(name)}
        if with_password:
            body["password"] = password
        return lambda: w.h.client.post(path, json=body, headers=auth)

    return prepare


def _as_admin(method: str, path: str, **kwargs: Any) -> Callable[[World], Action]:
    def prepare(w: World) -> Action:
        concrete = path.format(user_id=w.victim_id, service_id=w.service_id)
        return lambda: w.h.client.request(method, concrete, headers=w.admin, **kwargs)

    return prepare


def _anonymous(method: str, path: str, body: dict[str, Any]) -> Callable[[World], Action]:
    return lambda w: lambda: w.h.client.request(method, path, json=body)


RECIPES: dict[tuple[str, str], Callable[[World], Action]] = {
    ("POST", "/api/v1/auth/login"): _anonymous(
        "POST", "/api/v1/auth/login", {"username": "nobody", "password": "wrong-password-1"}
    ),
    ("POST", "/api/v1/auth/refresh"): _refresh,
    ("POST", "/api/v1/auth/logout"): _as_fresh_user("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/password"): _password,
    ("POST", "/api/v1/auth/register"): _anonymous(
        "POST", "/api/v1/auth/register", {"username": "walkin", "password": strong_password()}
    ),
    ("POST", "/api/v1/auth/setup"): _anonymous(
        "POST",
        "/api/v1/auth/setup",
        {"token": "not-the-token", "username": "late", "password": strong_password()},
    ),
    ("DELETE", "/api/v1/auth/sessions/{session_id}"): _revoke_own_session,
    ("POST", "/api/v1/auth/mfa/setup"): _as_fresh_user("POST", "/api/v1/auth/mfa/setup"),
    ("POST", "/api/v1/auth/mfa/confirm"): _as_fresh_user(
        "POST", "/api/v1/auth/mfa/confirm", {"code": "000000"}
    ),
    ("POST", "/api/v1/auth/mfa/verify"): _mfa_verify,
    ("POST", "/api/v1/auth/mfa/step-up"): _with_code("/api/v1/auth/mfa/step-up"),
    ("POST", "/api/v1/auth/mfa/disable"): _with_code("/api/v1/auth/mfa/disable", True),
    ("POST", "/api/v1/auth/mfa/backup-codes"): _with_code("/api/v1/auth/mfa/backup-codes"),
    ("DELETE", "/api/v1/users/{user_id}/mfa"): _as_admin("DELETE", "/api/v1/users/{user_id}/mfa"),
    ("POST", "/api/v1/users"): _as_admin(
        "POST",
        "/api/v1/users",
        json={"username": "newbie", "password": strong_password(), "role": "viewer"},
    ),
    ("PATCH", "/api/v1/users/{user_id}"): _as_admin(
        "PATCH", "/api/v1/users/{user_id}", json={"email": "v@example.com"}
    ),
    ("DELETE", "/api/v1/users/{user_id}"): _as_admin("DELETE", "/api/v1/users/{user_id}"),
    ("POST", "/api/v1/services"): _as_admin(
        "POST", "/api/v1/services", json={"name": "other", **SPEC}
    ),
    ("PATCH", "/api/v1/services/{service_id}"): _as_admin(
        "PATCH", "/api/v1/services/{service_id}", json={"idle_timeout_s": 60}
    ),
    ("DELETE", "/api/v1/services/{service_id}"): _as_admin(
        "DELETE", "/api/v1/services/{service_id}"
    ),
    ("POST", "/api/v1/services/{service_id}/start"): _as_admin(
        "POST", "/api/v1/services/{service_id}/start"
    ),
    ("POST", "/api/v1/services/{service_id}/stop"): _as_admin(
        "POST", "/api/v1/services/{service_id}/stop"
    ),
    ("PUT", "/api/v1/files/{path:path}"): _as_admin(
        "PUT", "/api/v1/files/svc/compose.yaml", content=b"services: {}\n"
    ),
    # The default (file) provider is read-only here: the refused write is audited too.
    ("PUT", "/api/v1/secrets/{path:path}"): _as_admin(
        "PUT", "/api/v1/secrets/svc/db", json={"values": {"password": "x"}}
    ),
    ("POST", "/login"): _cookie_login_form,
    ("POST", "/login/code"): _login_code_form,
    ("POST", "/mfa/enrol"): _begin_enrolment_page,
    ("POST", "/mfa/enrol/confirm"): _confirm_enrolment_page,
    ("POST", "/account/sessions/revoke"): _account_revoke,
    ("POST", "/account/sessions/revoke-others"): _account_revoke_others,
    ("POST", "/account/password"): _account_password,
    ("POST", "/account/mfa/backup-codes"): _account_backup_codes,
    ("POST", "/account/mfa/disable"): _account_disable_mfa,
    ("POST", "/admin/sessions/revoke"): _console_revoke,
    ("POST", "/admin/sessions/revoke-user"): _console_revoke_user,
    ("POST", "/services/{name}/{action}"): _dashboard_stop,
    ("POST", "/services/new"): _new_service_form,
    ("POST", "/services/{name}/edit"): _edit_service_form,
    ("POST", "/logout"): _sign_out_form,
    ("POST", "/admin/users"): _console_create_user,
    ("POST", "/admin/users/{name}/{action}"): _console_disable_user,
    ("POST", "/admin/secrets/write"): _console_secret_write,
    ("POST", "/admin/secrets/reveal"): _console_secret_reveal,
    ("POST", "/admin/audit/verify"): _console_verify,
    ("POST", "/auth/proxy"): _service_host_code,
    ("POST", "/mfa/step-up"): _page_code,
    ("POST", "/csp-report"): _anonymous(
        "POST",
        "/csp-report",
        {"csp-report": {"document-uri": "https://testserver/", "violated-directive": "img-src"}},
    ),
}


def state_changing(app: Any) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in api_routes(app)
        for method in route.methods
        if method not in ("GET", "HEAD", "OPTIONS")
    }


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(runtime=FakeRuntime(), auth={"registration_enabled": True})


def test_every_state_changing_route_has_a_recipe(h: Harness) -> None:
    assert state_changing(h.app) == set(RECIPES)


@pytest.mark.parametrize(("method", "path"), sorted(RECIPES))
def test_each_state_change_is_audited(h: Harness, method: str, path: str) -> None:
    action = RECIPES[(method, path)](World(h))
    before = count(h)
    reply = action()
    assert reply.status_code < 500, reply.text
    assert count(h) > before, f"{method} {path} answered {reply.status_code} and audited nothing"


@pytest.mark.parametrize("path", sorted(SIGN_IN_PAGES))
def test_a_page_post_without_a_session_goes_to_sign_in_and_changes_nothing(
    h: Harness, path: str
) -> None:
    client = TestClient(h.app, base_url="https://testserver")
    before = count(h)
    path = path.replace("{name}", "svc").replace("{action}", "stop")
    reply = client.post(path, data={"code": "123456"}, headers=FORM, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next=")
    assert count(h) == before


@pytest.mark.parametrize(
    ("method", "path"), sorted(k for k in RECIPES if k[1] not in PUBLIC | SIGN_IN_PAGES)
)
def test_each_unauthenticated_attempt_is_audited(h: Harness, method: str, path: str) -> None:
    concrete = path.replace("{user_id}", "1").replace("{service_id}", "1")
    concrete = concrete.replace("{session_id}", "x").replace("{path:path}", "svc/x")
    client = TestClient(h.app, base_url="https://testserver")
    before = count(h)
    reply = client.request(method, concrete, json={})
    assert reply.status_code == 401
    assert count(h) == before + 1
