"""The console's Sessions page in Chromium: an admin signs in with a TOTP code, sees the
sessions another user opened from two other clients (a Chromium of his own, a second browser
process and profile, and an API client sending a Firefox user agent), filters the list to that
user and revokes all of its sessions; his browser's very next page load lands on the sign-in
form, and his API client's next request is refused. axe-core and screenshots at 1440 px and
390 px wide on each state; no CSP violation on any page of either browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from support.axe import check_accessibility
from support.browser import (
    BrowserCertificate,
    Screenshots,
    Shot,
    admin_url,
    browser_server,
    create_user,
    enrol_by_api,
    next_code,
    sign_in_with_code,
    sign_in_with_password,
    text,
)
from support.login import bearer

pytestmark = pytest.mark.integration

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


def test_an_admin_revokes_another_users_sessions_and_his_browsers_next_request_is_refused(
    tmp_path: Path,
    certificate: BrowserCertificate,
    browser: Any,
    page: Any,
    shot: Shot,
    second_browser: Any,
    screenshots: Screenshots,
) -> None:
    data = tmp_path / "data"
    admin = create_user(data, "ada", "admin")
    other = create_user(data, "ben", "developer")
    csp_violations: list[str] = []
    # Ben's own Chromium: another process, another profile, so another session cookie.
    bens_tab = second_browser.pages[0] if second_browser.pages else second_browser.new_page()

    def bens_shot(step: str) -> None:
        bens_tab.screenshot(path=str(screenshots.path(f"ben-{step}")), full_page=True)

    def on_console(message: Any) -> None:
        # Chromium reports a refused inline script or style on the console.
        if "Content Security Policy" in message.text:
            csp_violations.append(message.text)

    for tab in (page, bens_tab):
        tab.on("console", on_console)
    with (
        browser_server(data, certificate) as server,
        httpx.Client(
            base_url=server.base_url,
            verify=server.ssl_context(),
            headers={"User-Agent": FIREFOX},
        ) as bens_client,
    ):
        secret, _codes = enrol_by_api(server, "ada", admin)
        # Ben signs in from his browser, through the sign-in page, onto the dashboard.
        bens_tab.goto(admin_url(server, "/services"))
        bens_tab.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_password(bens_tab, "ben", other)
        bens_tab.wait_for_url(admin_url(server, "/services"))
        bens_tab.get_by_role("heading", name="Services").wait_for()
        bens_shot("signed-in")
        # And from another client: the login API, as a Firefox on Windows.
        login = bens_client.post("/api/v1/auth/login", json={"username": "ben", "password": other})
        assert login.status_code == 200, login.text
        bens = bearer(login.json()["access_token"])
        assert bens_client.get("/api/v1/auth/sessions", headers=bens).status_code == 200

        # Signed out, the page sends to sign-in, and comes back after the code step.
        page.goto(admin_url(server, "/admin/sessions"))
        page.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_code(page, "ada", admin, next_code(secret))
        page.wait_for_url(admin_url(server, "/admin/sessions"))
        page.get_by_role("heading", name="Sessions", exact=True).wait_for()
        bens_rows = page.locator("tr", has=page.get_by_role("link", name="ben", exact=True))
        assert bens_rows.count() == 2
        firefox, chromium = sorted(bens_rows.all_inner_texts(), key=lambda r: "Firefox" not in r)
        assert "Firefox 128.0" in firefox and "Windows 10" in firefox and "127.0.0.1" in firefox
        assert "Chrome" in chromium and "Linux" in chromium and "127.0.0.1" in chromium
        mine = page.locator("tr.current").inner_text()
        assert "ada" in mine and "This session" in mine
        check_accessibility(page, shot, "sessions")

        # Only ben's, then all of them revoked.
        page.get_by_label("User").fill("ben")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(admin_url(server, "/admin/sessions?user=ben"))
        assert "2 live sessions of ben." in text(page)
        check_accessibility(page, shot, "sessions-of-ben")
        page.locator(".console-sessions-revoke-all").get_by_role("button").click()
        page.wait_for_url(admin_url(server, "/admin/sessions?done=user-revoked&user=ben"))
        assert "Every session of that user was revoked." in text(page)
        assert "0 live sessions of ben." in text(page)
        check_accessibility(page, shot, "sessions-revoked")

        # Ben's browser: its next page load is the sign-in form, to come back to the dashboard.
        bens_tab.goto(admin_url(server, "/services"))
        assert bens_tab.url == admin_url(server, "/login?next=%2Fservices")
        assert bens_tab.get_by_role("heading", name="Sign in").is_visible()
        assert bens_tab.get_by_label("Username").is_visible()
        assert bens_tab.get_by_label("Password").is_visible()
        assert bens_tab.get_by_role("heading", name="Services").count() == 0
        check_accessibility(bens_tab, bens_shot, "sent-to-sign-in")
        # His API client's next request is refused too; the admin's own session goes on.
        refused = bens_client.get("/api/v1/auth/sessions", headers=bens)
        assert refused.status_code == 401, refused.text
        page.goto(admin_url(server, "/admin/sessions"))
        page.get_by_role("heading", name="Sessions", exact=True).wait_for()
        assert page.locator("tr", has=page.get_by_role("link", name="ben")).count() == 0
    assert csp_violations == []
