"""The same-origin check as browsers define it, attacked on both doors it guards: the cookie login
(a public route: login CSRF) and a cookie-authenticated state change (with the right CSRF token).

Browsers say who started a request: `Sec-Fetch-Site` first (no page can set it), else `Origin`,
else `Referer`. Each forged or missing proof below must be refused, and each real browser's
combination accepted (Chromium under the old `Referrer-Policy: no-referrer` sent `Origin: null`
with `Sec-Fetch-Site: same-origin` on WakeDock's own sign-in form, and was refused).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import CLIENT_IP, Harness
from wakedock.audit.models import AuditEvent

pytestmark = pytest.mark.security

LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
COOKIE = "__Host-wakedock_session"
HERE = "https://testserver"
ALLOWED = "https://admin.example.com"  # an allowed CORS origin in these tests

REFUSED = {
    "forged cross-site, matching Origin": {"Sec-Fetch-Site": "cross-site", "Origin": HERE},
    "same-site (a service host), matching Origin": {"Sec-Fetch-Site": "same-site", "Origin": HERE},
    "same-site service host": {
        "Sec-Fetch-Site": "same-site",
        "Origin": "https://app.testserver",
    },
    "cross-site, Origin null": {"Sec-Fetch-Site": "cross-site", "Origin": "null"},
    "unknown Sec-Fetch-Site": {"Sec-Fetch-Site": "same-origin-ish"},
    "same-origin claimed, foreign Origin": {
        "Sec-Fetch-Site": "same-origin",
        "Origin": "https://evil.example",
    },
    "Origin null, nothing else": {"Origin": "null"},
    "Origin null, foreign Referer": {
        "Origin": "null",
        "Referer": "https://evil.example/page",
    },
    "foreign Referer": {"Referer": "https://evil.example/testserver"},
    "look-alike Referer": {"Referer": "https://testserver.evil.example/login"},
    "Referer with userinfo": {"Referer": "https://testserver@evil.example/login"},
    "plain-http Referer of an https server": {"Referer": "http://testserver/login"},
    "plain-http Origin of an https server": {"Origin": "http://testserver"},
    "foreign Origin, own Referer": {
        "Origin": "https://evil.example",
        "Referer": f"{HERE}/login",
    },
    "Origin with another port": {"Origin": "https://testserver:8443"},
    "unparsable Referer": {"Referer": "https://[testserver/login"},
}

ACCEPTED = {
    # Chromium's own form post under Referrer-Policy: no-referrer (issue 12).
    "same-origin, Origin null": {"Sec-Fetch-Site": "same-origin", "Origin": "null"},
    "same-origin, own Origin": {"Sec-Fetch-Site": "same-origin", "Origin": HERE},
    # The user started it (address bar, bookmark, a resubmitted form): no page can cause it.
    "user-initiated": {"Sec-Fetch-Site": "none"},
    "own Origin (no Fetch metadata)": {"Origin": HERE},
    "Origin null, own Referer": {"Origin": "null", "Referer": f"{HERE}/login?next=/"},
    "own Referer only": {"Referer": f"{HERE}/login"},
    "allowed CORS origin, cross-site": {"Sec-Fetch-Site": "cross-site", "Origin": ALLOWED},
    "no browser headers (curl)": {},
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # The rule is about headers: one database backend is enough.
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(http={"cors_origins": [ALLOWED]})


def csrf_failures(h: Harness) -> list[AuditEvent]:
    with h.components.db() as db:
        query = select(AuditEvent).where(AuditEvent.type == "csrf_failure")
        return list(db.execute(query).scalars())


def browser(h: Harness) -> TestClient:
    return TestClient(h.app, base_url=HERE, client=(CLIENT_IP, 50010))


def cookie_login(client: TestClient, name: str, password: str, headers: dict[str, str]) -> Any:
    return client.post(
        LOGIN,
        data={"username": name, "password": password, "mode": "cookie"},
        headers=headers,
    )


@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
def test_cookie_login_without_same_origin_proof_is_refused(
    h: Harness, headers: dict[str, str]
) -> None:
    name, password = h.create_user("mallory")
    client = browser(h)
    reply = cookie_login(client, name, password, headers)
    assert reply.status_code == 403
    assert reply.json()["code"] == "csrf_failed"
    assert COOKIE not in reply.headers.get("set-cookie", "")
    assert client.get(ME).status_code == 401
    assert len(csrf_failures(h)) == 1


@pytest.mark.parametrize("headers", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_cookie_login_with_same_origin_proof_succeeds(h: Harness, headers: dict[str, str]) -> None:
    name, password = h.create_user("victor")
    client = browser(h)
    reply = cookie_login(client, name, password, headers)
    assert reply.status_code == 200, reply.text
    assert client.get(ME).json()["username"] == name
    assert csrf_failures(h) == []


@pytest.fixture
def signed_in(h: Harness) -> tuple[TestClient, str]:
    """A browser session (cookie) and its CSRF token."""
    name, password = h.create_user("victim")
    client = browser(h)
    reply = cookie_login(client, name, password, {"Origin": HERE})
    assert reply.status_code == 200, reply.text
    return client, reply.json()["csrf_token"]


@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
def test_state_change_without_same_origin_proof_is_refused_even_with_the_token(
    h: Harness, signed_in: tuple[TestClient, str], headers: dict[str, str]
) -> None:
    client, token = signed_in
    reply = client.post(LOGOUT, headers={"X-CSRF-Token": token, **headers})
    assert reply.status_code == 403
    assert reply.json()["code"] == "csrf_failed"
    assert client.get(ME).status_code == 200  # still signed in
    [failure] = csrf_failures(h)
    assert failure.actor == "victim" and failure.target == LOGOUT


@pytest.mark.parametrize("headers", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_state_change_with_same_origin_proof_and_token_succeeds(
    h: Harness, signed_in: tuple[TestClient, str], headers: dict[str, str]
) -> None:
    client, token = signed_in
    reply = client.post(LOGOUT, headers={"X-CSRF-Token": token, **headers})
    assert reply.status_code == 204, reply.text
    assert client.get(ME).status_code == 401
    assert csrf_failures(h) == []


@pytest.mark.parametrize("headers", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_same_origin_proof_never_replaces_the_token(
    h: Harness, signed_in: tuple[TestClient, str], headers: dict[str, str]
) -> None:
    client, _token = signed_in
    reply = client.post(LOGOUT, headers=headers)
    assert reply.status_code == 403 and reply.json()["code"] == "csrf_failed"
    assert client.get(ME).status_code == 200


def test_a_plain_http_server_accepts_its_own_http_origin(
    make_harness: Callable[..., Harness],
) -> None:
    """`--insecure-http` (local testing): the browser's origin is http, and that is this server."""
    h = make_harness()
    name, password = h.create_user("plain")
    client = TestClient(h.app, base_url="http://testserver", client=(CLIENT_IP, 50011))
    own = client.post(
        LOGIN,
        data={"username": name, "password": password, "mode": "cookie"},
        headers={"Origin": "http://testserver", "Referer": "http://testserver/login"},
    )
    assert own.status_code == 200, own.text
    foreign = client.post(
        LOGIN,
        data={"username": name, "password": password, "mode": "cookie"},
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
