"""The sign-in pages of the admin host: the password step, the code step (TOTP or backup code),
what each refusal shows, and where a successful sign-in goes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from support.clocked import clock, h  # noqa: F401 - fixtures
from support.pages import (
    HERE,
    code_step,
    events,
    hidden,
    page_client,
    password_step,
    with_mfa,
)
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role
from wakedock.web.redirects import local_path

COOKIE = "__Host-wakedock_session"
ME = "/api/v1/auth/me"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # Pages over the same services the API tests cover on both backends: SQLite is enough.
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def browser(h: Harness) -> TestClient:
    return page_client(h, 50020)


def test_the_sign_in_page_has_no_inline_script_or_style(browser: TestClient) -> None:
    page = browser.get("/login", params={"next": "/api/v1/auth/me"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text and "<style" not in page.text and "style=" not in page.text
    assert '<link rel="stylesheet" href="/assets/wakedock.css">' in page.text
    assert hidden(page.text, "next") == "/api/v1/auth/me"
    sheet = browser.get("/assets/wakedock.css")
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")


def test_markup_in_next_is_escaped_and_foreign_targets_become_root(browser: TestClient) -> None:
    page = browser.get("/login", params={"next": '/x"><script>alert(1)</script>'})
    assert "<script>" not in page.text
    assert hidden(page.text, "next") == "/x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert hidden(browser.get("/login?next=//evil.example/").text, "next") == "/"


@pytest.mark.security
@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example/",  # browsers drop tabs and newlines: "//evil.example/"
        "/\n/evil.example/",
        "/\r\n/evil.example",
        "/\\evil.example",  # browsers read a backslash as a slash
        "/ /evil.example",
        "/\x00/evil.example",
        "/\t/[x",  # once a 500 after the password check: "[" read as an IPv6 host
    ],
)
def test_a_next_that_a_browser_would_read_as_another_host_becomes_root(
    browser: TestClient, target: str
) -> None:
    assert hidden(browser.get("/login", params={"next": target}).text, "next") == "/"
    assert local_path(target) == "/"


def test_plain_local_targets_are_kept() -> None:
    for target in ("/", "/api/v1/auth/me", "/auth/proxy?next=https%3A%2F%2Fapp.localhost%2F"):
        assert local_path(target) == target


def test_password_only_gets_a_code_step_and_the_totp_code_signs_in(
    h: Harness, browser: TestClient
) -> None:
    name, password = with_mfa(h, "dora")
    first = password_step(browser, name, password, "/api/v1/auth/me")
    assert first.status_code == 200
    assert "Two-step verification" in first.text
    assert "backup codes" in first.text
    assert first.headers["cache-control"] == "no-store"  # the challenge is in the page
    assert COOKIE not in first.headers.get("set-cookie", "")
    assert hidden(first.text, "next") == "/api/v1/auth/me"

    second = code_step(
        browser, hidden(first.text, "challenge"), h.totp_code(name), "/api/v1/auth/me"
    )
    assert second.status_code == 303
    assert second.headers["location"] == "/api/v1/auth/me"
    assert second.headers["set-cookie"].startswith(f"{COOKIE}=")
    assert browser.get(ME).json()["username"] == name


def test_a_backup_code_in_the_code_field_signs_in_once(h: Harness, browser: TestClient) -> None:
    name, password = with_mfa(h, "emil")
    code = h.backup_codes[name][0]
    first = password_step(browser, name, password)
    # Typed as people do: lower case, a space instead of the dash.
    signed_in = code_step(browser, hidden(first.text, "challenge"), code.lower().replace("-", " "))
    assert signed_in.status_code == 303, signed_in.text

    browser.cookies.clear()
    again = password_step(browser, name, password)
    reused = code_step(browser, hidden(again.text, "challenge"), code)
    assert reused.status_code == 401
    assert "not valid or was already used" in reused.text
    assert browser.get(ME).status_code == 401


def test_a_wrong_code_says_so_and_the_same_step_can_be_retried(
    h: Harness, browser: TestClient, clock: FakeClock
) -> None:
    name, password = with_mfa(h, "fred")
    first = password_step(browser, name, password)
    challenge = hidden(first.text, "challenge")
    right = h.totp_code(name)
    wrong = "000000" if right != "000000" else "111111"
    refused = code_step(browser, challenge, wrong)
    assert refused.status_code == 401
    assert "That code is not valid" in refused.text
    assert hidden(refused.text, "challenge") == challenge
    assert wrong not in refused.text.replace(challenge, "")  # the input is not echoed
    [failure] = [e for e in events(h, "mfa_failure") if e.target == name]
    assert '"purpose": "login"' in failure.details
    assert code_step(browser, challenge, right).status_code == 303


def test_a_forged_or_spent_challenge_starts_over(
    h: Harness, browser: TestClient, clock: FakeClock
) -> None:
    name, password = with_mfa(h, "gus")
    forged = code_step(browser, "not-a-challenge", "123456")
    assert forged.status_code == 401
    assert "This sign-in expired" in forged.text
    assert hidden(forged.text, "next") == "/"
    first = password_step(browser, name, password)
    challenge = hidden(first.text, "challenge")
    assert code_step(browser, challenge, h.totp_code(name)).status_code == 303
    clock.advance(30)
    spent = code_step(browser, challenge, h.totp_code(name))
    assert spent.status_code == 401 and "This sign-in expired" in spent.text


@pytest.mark.security
def test_the_code_step_from_another_site_is_refused(h: Harness, browser: TestClient) -> None:
    name, password = with_mfa(h, "hal")
    challenge = hidden(password_step(browser, name, password).text, "challenge")
    forged = browser.post(
        "/login/code",
        data={"challenge": challenge, "code": h.totp_code(name)},
        headers={"Origin": HERE, "Sec-Fetch-Site": "cross-site"},
    )
    assert forged.status_code == 403
    assert "Request refused" in forged.text
    assert COOKIE not in forged.headers.get("set-cookie", "")
    assert len(events(h, "csrf_failure")) == 1


def test_a_wrong_password_shows_the_generic_error(h: Harness, browser: TestClient) -> None:
    name, _password = h.create_user("ivy")
    reply = password_step(browser, name, "Not-the-password-123")
    assert reply.status_code == 401
    assert "Invalid username or password" in reply.text
    assert "Not-the-password-123" not in reply.text


def test_an_admin_without_mfa_is_sent_to_the_enrolment_page(
    h: Harness, browser: TestClient
) -> None:
    name, password = h.create_user("jo", Role.ADMIN)
    reply = password_step(browser, name, password, "/api/v1/users")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/mfa/enrol?next=%2Fapi%2Fv1%2Fusers"
    assert reply.headers["set-cookie"].startswith(f"{COOKIE}=")


def test_a_sign_in_bound_for_a_service_moves_on_by_a_page(h: Harness, browser: TestClient) -> None:
    """A redirect of a form post to a service host would break the page's `form-action 'self'`:
    the answer is a page that moves on to the (same-origin) hand-off by itself."""
    name, password = h.create_user("kim")
    handoff = "/auth/proxy?next=" + quote("https://app.localhost/", safe="")
    reply = password_step(browser, name, password, handoff)
    assert reply.status_code == 200
    assert reply.headers["set-cookie"].startswith(f"{COOKIE}=")
    assert f'<meta http-equiv="refresh" content="0; url={handoff}">' in reply.text
    assert "<script" not in reply.text
