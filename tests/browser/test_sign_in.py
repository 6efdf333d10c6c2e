"""Signing in with Chromium, as a person would: the sign-in form, the code step (TOTP or a
backup code), the MFA enrolment pages of a new admin, and a login form on another site refused.

Every test runs a real `wakedock serve` over HTTPS; the browser reaches it as
`https://localhost:<port>` (resolved to 127.0.0.1 inside Chromium).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.axe import check_accessibility
from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    browser_server,
    create_user,
    enrol_by_api,
    enrol_on_the_page,
    enter_code,
    next_code,
    sign_in_with_code,
    sign_in_with_password,
    site_url,
    text,
)
from support.server import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_sign_in_with_password_and_authenticator_code(
    data: Path, certificate: BrowserCertificate, page: Any, shot: Shot
) -> None:
    password = create_user(data, "dora", "viewer")
    with browser_server(data, certificate) as server:
        secret, _codes = enrol_by_api(server, "dora", password)
        page.goto(admin_url(server, "/login?next=/api/v1/auth/me"))
        assert page.get_by_role("heading", name="Sign in").is_visible()
        check_accessibility(page, shot, "sign-in-form")
        sign_in_with_password(page, "dora", password)

        page.get_by_role("heading", name="Two-step verification").wait_for()
        assert "Enter the 6-digit code from your authenticator app" in text(page)
        check_accessibility(page, shot, "code-step")
        enter_code(page, next_code(secret))

        page.wait_for_url(admin_url(server, "/api/v1/auth/me"))
        assert '"username":"dora"' in text(page)
        shot("signed-in")


def test_sign_in_with_a_backup_code(
    data: Path, certificate: BrowserCertificate, page: Any, shot: Shot
) -> None:
    password = create_user(data, "emil", "viewer")
    with browser_server(data, certificate) as server:
        _secret, codes = enrol_by_api(server, "emil", password)
        page.goto(admin_url(server, "/login?next=/api/v1/auth/sessions"))
        sign_in_with_password(page, "emil", password)
        page.get_by_role("heading", name="Two-step verification").wait_for()
        assert "backup codes" in text(page)

        page.get_by_label("Authentication code").fill(codes[3])
        shot("backup-code-typed")
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(admin_url(server, "/api/v1/auth/sessions"))
        assert '"current":true' in text(page)
        shot("signed-in")


def test_a_new_admin_enrols_on_the_enrolment_page_then_signs_in_with_totp(
    data: Path, certificate: BrowserCertificate, browser: Any, page: Any, shot: Shot
) -> None:
    password = create_user(data, "erin", "admin")
    with browser_server(data, certificate) as server:
        page.goto(admin_url(server, "/login?next=/api/v1/users"))
        sign_in_with_password(page, "erin", password)

        # The admin has no MFA yet: the enrolment page says so instead of the users list.
        page.get_by_role("heading", name="Set up two-step verification").wait_for()
        assert page.url.startswith(admin_url(server, "/mfa/enrol?next="))
        assert "Your role (admin) must use two-step verification" in text(page)
        check_accessibility(page, shot, "enrolment-required")
        secret = enrol_on_the_page(page, shot)

        page.wait_for_url(admin_url(server, "/api/v1/users"))
        assert '"username":"erin"' in text(page)
        shot("intended-page")

        # A later sign-in asks for the code of the app just set up.
        browser.clear_cookies()
        page.goto(admin_url(server, "/login?next=/api/v1/auth/me"))
        sign_in_with_code(page, "erin", password, next_code(secret))
        page.wait_for_url(admin_url(server, "/api/v1/auth/me"))
        assert '"role":"admin"' in text(page)
        shot("later-sign-in")


@pytest.mark.security
def test_a_login_form_on_another_site_is_refused(
    data: Path,
    certificate: BrowserCertificate,
    page: Any,
    shot: Shot,
    foreign_site: Callable[[str], str],
) -> None:
    """Login CSRF: another site's form must not sign the visitor in (to the attacker's account)."""
    password = create_user(data, "mallory", "viewer")
    with browser_server(data, certificate) as server:
        attack = foreign_site(
            f"""<!doctype html><title>Win a prize</title>
<form method="post" action="{admin_url(server, "/login")}">
<input type="hidden" name="username" value="mallory">
<input type="hidden" name="password" value="{password}">
<input type="hidden" name="next" value="/api/v1/auth/me">
<button type="submit">Claim your prize</button></form>"""
        )
        page.goto(attack)
        shot("foreign-page")
        page.get_by_role("button", name="Claim your prize").click()

        page.get_by_role("heading", name="Request refused").wait_for()
        assert page.url == admin_url(server, "/login")
        shot("refused")
        page.goto(admin_url(server, "/api/v1/auth/me"))
        assert "Authentication required" in text(page)  # no session was planted
        shot("no-session")


def test_an_unknown_address_shows_a_plain_page_and_a_tampered_hand_off_is_refused(
    data: Path, certificate: BrowserCertificate, page: Any, shot: Shot
) -> None:
    """What a person sees at an address that is no service, and at a sign-in hand-off link that
    names one that is not WakeDock's (or cannot be read): a plain page, nothing internal."""
    with browser_server(data, certificate) as server:
        answer = page.goto(site_url(server, "nothing.localhost", "/some/page"))
        assert answer is not None and answer.status == 404
        assert page.get_by_role("heading", name="Unknown host").is_visible()
        assert "No service answers at this address." in text(page)
        assert answer.headers["x-frame-options"] == "DENY"
        shot("unknown-host")

        for target in ("https://evil.example/", "https://[app.localhost/"):
            answer = page.goto(admin_url(server, f"/auth/proxy?next={target}"))
            assert answer is not None and answer.status == 400
            assert "This address is not a WakeDock service." in text(page)
        shot("foreign-hand-off")


def test_a_network_the_access_policy_denies_sees_a_refusal_with_its_reference(
    data: Path, certificate: BrowserCertificate, page: Any, shot: Shot
) -> None:
    """Zero trust on the sign-in page: the browser's network (loopback here) on the deny list.
    The page says the sign-in was refused and gives the reference an admin looks the reasons
    up by; it never says which rule refused it, and no session cookie is set."""
    password = create_user(data, "fern", "viewer")
    env = {"WAKEDOCK_ZEROTRUST__DENY_NETWORKS": '["127.0.0.0/8"]'}
    with browser_server(data, certificate, env=env) as server:
        page.goto(admin_url(server, "/login"))
        sign_in_with_password(page, "fern", password)
        page.get_by_text("sign-in refused by the access policy").wait_for()
        refusal = text(page)
        assert "(reference " in refusal and "deny list" not in refusal
        check_accessibility(page, shot, "sign-in-refused-by-policy")
        assert not [c for c in page.context.cookies() if c["name"].startswith("__Host-")]
        reference = refusal.split("(reference ")[1].split(")")[0]
    exported = run_cli(data, "audit", "export", "--type", "zero_trust_decision",
                       "--request-id", reference)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert '"decision": "deny"' in exported.stdout and '"network"' in exported.stdout
