"""The Account page in Chromium, as its owner uses it: sign in (with a TOTP code), see my
sessions, sign out my phone from the laptop and watch the phone sent to sign in; change the
password (a weak one refused next to the field); new backup codes for a fresh code (the same code
twice refused). The attacks: a forged post without the CSRF token, a form on another site, and a
tampered form naming another user's session. Screenshots at 390 px and 1440 px wide; no CSP
violation on any page.

Each browser (laptop, phone, another user's) is a context of its own in one Chromium: its own
cookies, so its own session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import strong_password
from support.axe import NARROW, WIDE, serious_violations
from support.browser import (
    CHROMIUM,
    BrowserCertificate,
    Screenshots,
    admin_url,
    browser_server,
    chromium_args,
    create_user,
    enrol_by_api,
    enter_code,
    next_code,
    sign_in_with_code,
    sign_in_with_password,
    text,
)
from support.components import unavailable
from support.server import WakeDockProcess

pytestmark = pytest.mark.integration

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
# Opens a browser of its own (cookies, session): `open_browser("laptop")` -> its tab.
OpenBrowser = Callable[..., Any]


@pytest.fixture
def csp_violations() -> list[str]:
    return []


@pytest.fixture
def open_browser(
    certificate: BrowserCertificate, csp_violations: list[str]
) -> Iterator[OpenBrowser]:
    """One Chromium; each call a new context (a separate browser as far as cookies go)."""
    if not Path(CHROMIUM).exists():
        unavailable("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
        raise AssertionError from None  # unreachable
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=chromium_args(certificate)
        )

        def open_one(name: str, **options: Any) -> Any:
            context = chromium.new_context(viewport=options.pop("viewport", WIDE), **options)
            context.set_default_timeout(30_000)
            tab = context.new_page()
            # Chromium reports a refused inline script or style on the console.
            tab.on(
                "console",
                lambda message: (
                    csp_violations.append(f"{name}: {message.text}")
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            return tab

        try:
            yield open_one
        finally:
            chromium.close()


def snap(screenshots: Screenshots, tab: Any, step: str) -> None:
    """The whole page at 1440 px and at 390 px wide (a phone), then back to where it was; at
    each width axe-core must find no serious or critical accessibility violation."""
    before = tab.viewport_size
    for label, size in (("1440px", WIDE), ("390px", NARROW)):
        tab.set_viewport_size(size)
        tab.screenshot(path=str(screenshots.path(f"{step}-{label}")), full_page=True)
        assert serious_violations(tab) == [], f"{step} at {label}"
    tab.set_viewport_size(before)


def open_account(tab: Any, server: WakeDockProcess) -> None:
    """Go to the Account page: without a session, the sign-in form comes first."""
    tab.goto(admin_url(server, "/account"))
    tab.get_by_role("heading", name="Sign in").wait_for()
    assert tab.url == admin_url(server, "/login?next=%2Faccount")


def on_account_page(tab: Any, server: WakeDockProcess) -> None:
    tab.wait_for_url(admin_url(server, "/account"))
    tab.get_by_role("heading", name="Account", exact=True).wait_for()


def sent_to_sign_in(tab: Any, server: WakeDockProcess) -> bool:
    """The tab's next request (a reload of the page) lands on the sign-in form."""
    tab.reload()
    tab.wait_for_load_state()
    return bool(
        tab.url == admin_url(server, "/login?next=%2Faccount")
        and tab.get_by_role("heading", name="Sign in").is_visible()
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_sign_in_with_totp_see_my_sessions_and_sign_out_my_phone(
    data: Path,
    certificate: BrowserCertificate,
    open_browser: OpenBrowser,
    screenshots: Screenshots,
    csp_violations: list[str],
) -> None:
    password = create_user(data, "nina", "viewer")
    with browser_server(data, certificate) as server:
        secret, backup_codes = enrol_by_api(server, "nina", password)
        laptop = open_browser("laptop")
        open_account(laptop, server)
        sign_in_with_code(laptop, "nina", password, next_code(secret))
        on_account_page(laptop, server)

        # A second browser, a phone, signs in too (with a backup code: the app's code of
        # this step is spent).
        phone = open_browser("phone", viewport=NARROW, user_agent=IPHONE)
        open_account(phone, server)
        sign_in_with_password(phone, "nina", password)
        phone.get_by_role("heading", name="Two-step verification").wait_for()
        enter_code(phone, backup_codes[0])
        on_account_page(phone, server)

        laptop.reload()
        # This one first; the phone; the API client that enrolled MFA for this test.
        sessions = laptop.locator(".session")
        assert sessions.count() == 3
        assert "This session" in sessions.nth(0).inner_text()
        assert re.search(r"Chrome \d+ on Linux", sessions.nth(0).inner_text())
        phone_line = laptop.locator(".session", has_text="Safari 17 on iOS").inner_text()
        assert "This session" not in phone_line
        assert laptop.locator(".session", has_text="python-httpx").count() == 1
        assert "127.0.0.1" in phone_line and "Last seen" in phone_line
        assert "On" in laptop.locator("#mfa-title + p").inner_text()
        snap(screenshots, laptop, "account")
        snap(screenshots, phone, "account-on-the-phone")

        # The dashboard's header: this page marked, a way to the services and back.
        nav = laptop.get_by_role("navigation", name="Main")
        assert nav.get_by_role("link", name="Account").get_attribute("aria-current") == "page"
        assert "nina" in laptop.locator(".signout").inner_text()
        nav.get_by_role("link", name="Services").click()
        laptop.get_by_role("heading", name="Services", exact=True).wait_for()
        laptop.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
        on_account_page(laptop, server)

        laptop.get_by_role("button", name="Revoke the session of Safari 17 on iOS").click()
        laptop.wait_for_url(admin_url(server, "/account?done=session-revoked"))
        assert "The session was signed out." in text(laptop)
        assert laptop.locator(".session").count() == 2
        assert "Safari 17 on iOS" not in text(laptop)
        snap(screenshots, laptop, "phone-signed-out")

        # The phone's very next request is refused: back to the sign-in form.
        assert sent_to_sign_in(phone, server)
        phone.screenshot(path=str(screenshots.path("phone-sent-to-sign-in")), full_page=True)
    assert csp_violations == []


def test_change_password_weak_refused_next_to_the_field_then_a_good_one(
    data: Path,
    certificate: BrowserCertificate,
    open_browser: OpenBrowser,
    screenshots: Screenshots,
    csp_violations: list[str],
) -> None:
    password = create_user(data, "oscar", "viewer")
    with browser_server(data, certificate) as server:
        laptop = open_browser("laptop")
        open_account(laptop, server)
        sign_in_with_password(laptop, "oscar", password)
        on_account_page(laptop, server)
        assert "Set up two-step verification" in text(laptop)  # no MFA yet: the way to it

        laptop.get_by_label("Current password", exact=True).fill(password)
        laptop.get_by_label("New password", exact=True).fill("password1234")
        laptop.get_by_role("button", name="Change password").click()
        problem = laptop.locator("#new-password-error")
        problem.wait_for()
        assert problem.inner_text().strip() == "Password is a commonly used password."
        new_field = laptop.get_by_label("New password", exact=True)
        assert "new-password-error" in new_field.get_attribute("aria-describedby")
        assert new_field.get_attribute("aria-invalid") == "true"
        assert new_field.input_value() == ""  # nothing typed comes back
        snap(screenshots, laptop, "weak-password-refused")

        good = strong_password()
        laptop.get_by_label("Current password", exact=True).fill(password)
        laptop.get_by_label("New password", exact=True).fill(good)
        laptop.get_by_role("button", name="Change password").click()
        laptop.wait_for_url(admin_url(server, "/account?done=password-changed"))
        assert "Your password was changed." in text(laptop)
        snap(screenshots, laptop, "password-changed")

        # Next sign-in: the old password is refused, the new one works.
        other = open_browser("later")
        open_account(other, server)
        sign_in_with_password(other, "oscar", password)
        other.get_by_text("Invalid username or password").wait_for()
        other.screenshot(path=str(screenshots.path("old-password-refused")), full_page=True)
        sign_in_with_password(other, "oscar", good)
        on_account_page(other, server)
    assert csp_violations == []


def test_new_backup_codes_for_a_fresh_code_and_a_reused_code_refused(
    data: Path,
    certificate: BrowserCertificate,
    open_browser: OpenBrowser,
    screenshots: Screenshots,
    csp_violations: list[str],
) -> None:
    password = create_user(data, "pola", "viewer")
    with browser_server(data, certificate) as server:
        secret, old_codes = enrol_by_api(server, "pola", password)
        laptop = open_browser("laptop")
        open_account(laptop, server)
        sign_in_with_password(laptop, "pola", password)
        laptop.get_by_role("heading", name="Two-step verification").wait_for()
        enter_code(laptop, old_codes[0])
        on_account_page(laptop, server)
        assert laptop.locator("#backup-codes-left").inner_text() == "9"

        code = next_code(secret)
        field = "Code from your app (for new backup codes)"
        laptop.get_by_label(field).fill(code)
        laptop.get_by_role("button", name="Generate new backup codes").click()
        laptop.get_by_role("heading", name="New backup codes").wait_for()
        new_codes = [c.strip() for c in laptop.locator("#backup-codes li").all_inner_texts()]
        assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
        assert "shown only this once" in text(laptop)
        snap(screenshots, laptop, "new-backup-codes")

        laptop.get_by_role("link", name="I saved them, back to my account").click()
        on_account_page(laptop, server)
        assert laptop.locator("#backup-codes-left").inner_text() == "10"
        laptop.get_by_label(field).fill(code)  # the same code again: a replay
        laptop.get_by_role("button", name="Generate new backup codes").click()
        problem = laptop.locator("#backup-code-error")
        problem.wait_for()
        assert "already used" in problem.inner_text()
        assert laptop.get_by_label(field).get_attribute("aria-invalid") == "true"
        snap(screenshots, laptop, "reused-code-refused")

        # The old backup codes stopped working; the new ones sign in.
        later = open_browser("later")
        open_account(later, server)
        sign_in_with_password(later, "pola", password)
        enter_code(later, old_codes[1])
        later.get_by_text("That code is not valid or was already used").wait_for()
        later.get_by_label("Authentication code").fill(new_codes[0])
        later.get_by_role("button", name="Verify").click()
        on_account_page(later, server)
    assert csp_violations == []


@pytest.mark.security
def test_forged_posts_without_the_csrf_token_change_nothing(
    data: Path,
    certificate: BrowserCertificate,
    open_browser: OpenBrowser,
    screenshots: Screenshots,
    foreign_site: Callable[[str], str],
) -> None:
    password = create_user(data, "quinn", "viewer")
    with browser_server(data, certificate) as server:
        laptop = open_browser("laptop")
        open_account(laptop, server)
        sign_in_with_password(laptop, "quinn", password)
        on_account_page(laptop, server)
        phone = open_browser("phone", user_agent=IPHONE)
        open_account(phone, server)
        sign_in_with_password(phone, "quinn", password)
        on_account_page(phone, server)
        others = admin_url(server, "/account/sessions/revoke-others")

        # With the laptop's cookie but no token (a request no page of WakeDock's sent), with a
        # made-up token, and with the real token from a foreign origin: all refused.
        token = laptop.locator('input[name="csrf_token"]').first.get_attribute("value")
        [cookie] = laptop.context.cookies()
        session = {"Cookie": f"{cookie['name']}={cookie['value']}"}
        with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
            for form, headers in (
                ({}, {}),
                ({"csrf_token": "forged"}, {}),
                ({"csrf_token": token}, {"Origin": "https://evil.example"}),
            ):
                reply = http.post(
                    "/account/sessions/revoke-others", data=form, headers=session | headers
                )
                assert reply.status_code == 403
                assert "Request refused" in reply.text

        # A form on another site: the browser sends no SameSite=Strict cookie with it, so it
        # reaches WakeDock signed out, and changes nothing.
        attack = foreign_site(
            f"""<!doctype html><title>Win a prize</title>
<form method="post" action="{others}">
<button type="submit">Claim your prize</button></form>"""
        )
        laptop.goto(attack)
        laptop.get_by_role("button", name="Claim your prize").click()
        laptop.get_by_role("heading", name="Sign in").wait_for()
        laptop.screenshot(path=str(screenshots.path("foreign-form-refused")), full_page=True)

        assert not sent_to_sign_in(phone, server)  # the phone is still signed in
        laptop.goto(admin_url(server, "/account"))
        on_account_page(laptop, server)  # and so is the laptop
        assert laptop.locator(".session").count() == 2


@pytest.mark.security
def test_a_tampered_form_cannot_revoke_another_users_session(
    data: Path,
    certificate: BrowserCertificate,
    open_browser: OpenBrowser,
    screenshots: Screenshots,
) -> None:
    """Mallory edits her own revoke form (a real post: her session, her CSRF token, this
    origin) to name Victor's session: refused as if it did not exist; Victor stays signed in."""
    victor_password = create_user(data, "victor", "viewer")
    mallory_password = create_user(data, "mallory", "viewer")
    with browser_server(data, certificate) as server:
        victor = open_browser("victor")
        open_account(victor, server)
        sign_in_with_password(victor, "victor", victor_password)
        on_account_page(victor, server)
        victor.goto(admin_url(server, "/api/v1/auth/sessions"))
        victim_session = re.search(r'"id":"([^"]+)"', text(victor))
        assert victim_session is not None

        mallory = open_browser("mallory")
        second = open_browser("mallory-2", user_agent=IPHONE)
        for tab in (mallory, second):
            open_account(tab, server)
            sign_in_with_password(tab, "mallory", mallory_password)
            on_account_page(tab, server)
        mallory.reload()
        hidden = mallory.locator('input[name="session"]')
        hidden.evaluate("(field, id) => { field.value = id; }", victim_session.group(1))
        mallory.get_by_role("button", name="Revoke the session of Safari 17 on iOS").click()

        mallory.get_by_text("That session has already ended.").wait_for()
        snap(screenshots, mallory, "tampered-form-refused")
        victor.goto(admin_url(server, "/account"))
        on_account_page(victor, server)
        assert not sent_to_sign_in(victor, server)
        assert not sent_to_sign_in(second, server)  # nor was Mallory's own session touched
