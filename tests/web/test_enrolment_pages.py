"""The MFA enrolment pages: no state change on GET, every post same-origin with the session's
CSRF token, the MFA service's rules (audit, rate limit) as through the API, and the way out to
where the user was going, a protected service included (which looped before)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import Harness
from support.clocked import clock, h  # noqa: F401 - fixtures
from support.fake_runtime import FakeRuntime
from support.pages import HERE, SAME_ORIGIN, events, hidden, page_client, password_step
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.auth.models import User
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

USERS = "/api/v1/users"


def shown_secret(page: str) -> str:
    """The key as the page shows it for typing by hand (groups of four)."""
    found = re.search(r'<code id="secret">([A-Z2-7 ]+)</code>', page)
    assert found, "no key on the page"
    return found.group(1).replace(" ", "")


def user(h: Harness, name: str) -> User:
    with h.components.db() as db:
        return db.execute(select(User).where(User.username == name)).scalar_one()


@pytest.fixture
def admin(h: Harness) -> TestClient:
    """A browser signed in (form) as an admin who has no MFA yet, on the enrolment page."""
    name, password = h.create_user("ada", Role.ADMIN)
    client = page_client(h, 50030)
    signed_in = password_step(client, name, password, USERS)
    assert signed_in.headers["location"] == f"/mfa/enrol?next={quote(USERS, safe='')}"
    return client


def start_page(client: TestClient) -> str:
    page = client.get("/mfa/enrol", params={"next": USERS})
    assert page.status_code == 200
    return str(page.text)


def begin(client: TestClient, token: str, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/mfa/enrol",
        data={"csrf_token": token, "next": USERS},
        headers=SAME_ORIGIN if headers is None else headers,
    )


def test_without_a_session_the_page_sends_to_sign_in(h: Harness) -> None:
    client = TestClient(h.app, base_url=HERE, follow_redirects=False)
    reply = client.get("/mfa/enrol", params={"next": USERS})
    assert reply.status_code == 303
    assert reply.headers["location"] == "/login?next=" + quote(
        f"/mfa/enrol?next={quote(USERS, safe='')}", safe=""
    )


def test_the_page_says_why_and_a_get_changes_nothing(h: Harness, admin: TestClient) -> None:
    page = start_page(admin)
    assert "Your role (admin) must use two-step verification" in page
    assert "<script" not in page and "style=" not in page
    assert user(h, "ada").mfa_pending_secret is None  # S3.5: nothing created by a GET
    assert events(h, "mfa_enrol_start") == []
    # The API says the same: until enrolled, nothing but enrolment.
    assert admin.get(USERS).json()["code"] == "mfa_enrollment_required"


@pytest.mark.security
@pytest.mark.parametrize(
    ("token", "headers"),
    [
        ("", SAME_ORIGIN),
        ("forged", SAME_ORIGIN),
        (None, {"Origin": "https://evil.example"}),
        (None, {"Origin": HERE, "Sec-Fetch-Site": "cross-site"}),
        (None, {"Origin": "null"}),
    ],
    ids=["no token", "forged token", "foreign origin", "cross-site", "origin null"],
)
def test_starting_needs_the_token_and_this_origin(
    h: Harness, admin: TestClient, token: str | None, headers: dict[str, str]
) -> None:
    real = hidden(start_page(admin), "csrf_token")
    reply = begin(admin, real if token is None else token, headers)
    assert reply.status_code == 403
    assert "Request refused" in reply.text
    assert user(h, "ada").mfa_pending_secret is None
    [failure] = events(h, "csrf_failure")
    assert failure.actor == "ada" and failure.target == "/mfa/enrol"


def test_the_token_may_come_in_the_header(h: Harness, admin: TestClient) -> None:
    token = hidden(start_page(admin), "csrf_token")
    reply = admin.post(
        "/mfa/enrol", data={"next": USERS}, headers={**SAME_ORIGIN, "X-CSRF-Token": token}
    )
    assert reply.status_code == 200
    assert user(h, "ada").mfa_pending_secret is not None


def test_enrolment_from_start_to_the_intended_page(
    h: Harness, admin: TestClient, clock: FakeClock
) -> None:
    token = hidden(start_page(admin), "csrf_token")
    shown = begin(admin, token)
    page = shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)
    secret = shown_secret(page)
    assert len(secret) == 32
    [started] = events(h, "mfa_enrol_start")
    assert started.actor == "ada"

    wrong = admin.post(
        "/mfa/enrol/confirm",
        data={"csrf_token": token, "next": USERS, "code": "000000"},
        headers=SAME_ORIGIN,
    )
    assert wrong.status_code == 400
    assert "That code did not match" in wrong.text
    assert "Start again with a new key" in wrong.text
    [failure] = events(h, "mfa_failure")
    assert '"purpose": "enrolment"' in failure.details

    code = pyotp.TOTP(secret).at(clock.now())
    done = admin.post(
        "/mfa/enrol/confirm",
        data={"csrf_token": token, "next": USERS, "code": code},
        headers=SAME_ORIGIN,
    )
    assert done.status_code == 200
    assert done.headers["cache-control"] == "no-store"
    codes = re.findall(r"<li><code>([A-Z2-9]{4}-[A-Z2-9]{4})</code></li>", done.text)
    assert len(codes) == 10
    assert f'href="{USERS}"' in done.text
    assert user(h, "ada").mfa_enabled
    assert len(events(h, "mfa_enrol")) == 1
    # The intended page now opens, and the enrolment page sends straight on.
    assert admin.get(USERS).status_code == 200
    again = admin.get("/mfa/enrol", params={"next": USERS})
    assert again.status_code == 303 and again.headers["location"] == USERS


@pytest.mark.security
def test_wrong_codes_are_rate_limited_as_through_the_api(h: Harness, admin: TestClient) -> None:
    token = hidden(start_page(admin), "csrf_token")
    begin(admin, token)
    statuses = []
    for _ in range(6):
        reply = admin.post(
            "/mfa/enrol/confirm",
            data={"csrf_token": token, "next": USERS, "code": "000000"},
            headers=SAME_ORIGIN,
        )
        statuses.append(reply.status_code)
    assert statuses == [400] * 5 + [429]
    assert "Too many wrong codes" in reply.text
    assert len(events(h, "rate_limit_hit")) == 1
    assert not user(h, "ada").mfa_enabled


def test_an_expired_setup_starts_again(h: Harness, admin: TestClient, clock: FakeClock) -> None:
    token = hidden(start_page(admin), "csrf_token")
    secret = shown_secret(begin(admin, token).text)
    clock.advance(16 * 60)
    late = admin.post(
        "/mfa/enrol/confirm",
        data={
            "csrf_token": token,
            "next": USERS,
            "code": pyotp.TOTP(secret).at(clock.now()),
        },
        headers=SAME_ORIGIN,
    )
    assert late.status_code == 409
    assert "This setup expired" in late.text
    assert "Start setup" in late.text
    assert not user(h, "ada").mfa_enabled


# -- a protected service: the admin enrols on the way instead of looping between hosts --------
@pytest.fixture
def proxied(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    harness = make_harness(runtime=runtime, proxy={"admin_hosts": ["localhost"]})
    add_service(harness, "app", access={"policy": "authenticated"})
    return harness


def test_an_admin_without_mfa_enrols_on_the_way_to_a_protected_service(
    proxied: Harness,
) -> None:
    h = proxied
    # The proxy sends browsers to proxy.admin_url: by default the first admin host and the port.
    ADMIN = "https://localhost:8443"
    name, password = h.create_user("ada", Role.ADMIN)
    html = {"Accept": "text/html"}
    with TestClient(create_asgi(h.components), base_url="https://app.localhost") as client:
        client.post(
            f"{ADMIN}/login",
            data={"username": name, "password": password},
            headers={"Origin": ADMIN},
        )
        # Signed in but not enrolled: the hand-off ends on the enrolment page, not in a loop.
        page = client.get("https://app.localhost/", headers=html)
        assert page.status_code == 200, page.text
        assert str(page.url).startswith(f"{ADMIN}/mfa/enrol?next=")
        assert "must use two-step verification" in page.text

        token = hidden(page.text, "csrf_token")
        next_path = hidden(page.text, "next").replace("&amp;", "&")
        assert next_path == "/auth/proxy?next=" + quote("https://app.localhost/", safe="")
        same = {"Origin": ADMIN}
        scan = client.post(
            f"{ADMIN}/mfa/enrol",
            data={"csrf_token": token, "next": next_path},
            headers=same,
        )
        code = pyotp.TOTP(shown_secret(scan.text)).now()
        done = client.post(
            f"{ADMIN}/mfa/enrol/confirm",
            data={"csrf_token": token, "next": next_path, "code": code},
            headers=same,
        )
        assert done.status_code == 200 and "Two-step verification is on" in done.text
        # "Continue" (a link): the hand-off now issues the ticket and the app answers.
        app = client.get(f"{ADMIN}{next_path}", headers=html)
        assert app.status_code == 200, app.text
        assert str(app.url) == "https://app.localhost/"
        assert "Starting app" in app.text  # the loading page, on the service host
        assert client.get("https://app.localhost/").text.startswith("hello from upstream")
