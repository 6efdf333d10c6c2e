"""The console's Sessions page in Chromium: an admin signs in with a TOTP code, sees the
session another user opened from another client (an API client sending a Firefox user agent),
filters the list to that user and revokes all of its sessions; that client's very next request
is refused. axe-core and screenshots at 1440 px and 390 px wide on each state; no CSP violation
on any page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from support.axe import check_accessibility
from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    browser_server,
    create_user,
    enrol_by_api,
    next_code,
    sign_in_with_code,
    text,
)
from support.login import bearer

pytestmark = pytest.mark.integration

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


def test_an_admin_revokes_another_users_sessions_and_its_next_request_is_refused(
    tmp_path: Path, certificate: BrowserCertificate, browser: Any, page: Any, shot: Shot
) -> None:
    data = tmp_path / "data"
    admin = create_user(data, "ada", "admin")
    other = create_user(data, "ben", "developer")
    csp_violations: list[str] = []
    # Chromium reports a refused inline script or style on the console.
    page.on(
        "console",
        lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    with (
        browser_server(data, certificate) as server,
        httpx.Client(
            base_url=server.base_url,
            verify=server.ssl_context(),
            headers={"User-Agent": FIREFOX},
        ) as bens_client,
    ):
        secret, _codes = enrol_by_api(server, "ada", admin)
        # Ben signs in from another client: the login API, as a Firefox on Windows.
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
        bens_row = page.locator("tr", has=page.get_by_role("link", name="ben", exact=True))
        assert bens_row.count() == 1
        line = bens_row.inner_text()
        assert "Firefox 128.0" in line and "Windows 10" in line and "127.0.0.1" in line
        mine = page.locator("tr.current").inner_text()
        assert "ada" in mine and "This session" in mine
        check_accessibility(page, shot, "sessions")

        # Only ben's, then all of them revoked.
        page.get_by_label("User").fill("ben")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(admin_url(server, "/admin/sessions?user=ben"))
        assert "1 live session of ben." in text(page)
        check_accessibility(page, shot, "sessions-of-ben")
        page.locator(".console-sessions-revoke-all").get_by_role("button").click()
        page.wait_for_url(admin_url(server, "/admin/sessions?done=user-revoked&user=ben"))
        assert "Every session of that user was revoked." in text(page)
        assert "0 live sessions of ben." in text(page)
        check_accessibility(page, shot, "sessions-revoked")

        # Ben's very next request is refused; the admin's own session goes on.
        refused = bens_client.get("/api/v1/auth/sessions", headers=bens)
        assert refused.status_code == 401, refused.text
        page.goto(admin_url(server, "/admin/sessions"))
        page.get_by_role("heading", name="Sessions", exact=True).wait_for()
        assert page.locator("tr", has=page.get_by_role("link", name="ben")).count() == 0
    assert csp_violations == []
