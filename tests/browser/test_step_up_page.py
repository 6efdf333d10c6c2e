"""A page the zero-trust engine steps up, in Chromium (docs/zerotrust.md, "On requests"): the
session signed in with Chromium; the same cookie from a browser the user never used (Firefox's
user agent, 20 points) opens the services page, with a `request` profile that steps up at 15.
The browser is asked for a fresh code, a wrong one is refused, a backup code brings it back to
the page it asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.axe import check_accessibility
from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    as_another_browser,
    browser_server,
    create_user,
    csp_reports,
    enrol_by_api,
    next_code,
    sign_in_with_code,
    text,
)

pytestmark = [pytest.mark.integration, pytest.mark.security]


def test_a_stepped_up_page_asks_for_a_code_and_comes_back(
    tmp_path: Path, certificate: BrowserCertificate, page: Any, shot: Shot
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_ZEROTRUST__PROFILES": '{"request": {"step_up_at": 15}}'}
    password = create_user(data, "hugo", "viewer")
    refused_by_csp = csp_reports(page)
    with browser_server(data, certificate, env) as server:
        secret, backup_codes = enrol_by_api(server, "hugo", password)
        page.goto(admin_url(server, "/login"))
        sign_in_with_code(page, "hugo", password, next_code(secret))
        page.get_by_role("heading", name="Services").wait_for()
        as_another_browser(page)
        page.goto(admin_url(server, "/services?q=wiki"))
        page.get_by_role("heading", name="Confirm it is you").wait_for()
        assert page.url == admin_url(server, "/mfa/step-up?next=%2Fservices%3Fq%3Dwiki")
        check_accessibility(page, shot, "fresh-code-asked")
        page.get_by_label("Authentication code").fill("000000")
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("alert").wait_for()
        assert "That code was not accepted" in text(page)
        shot("wrong-code")
        page.get_by_label("Authentication code").fill(backup_codes[0])
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("heading", name="Services").wait_for()
        assert page.url == admin_url(server, "/services?q=wiki")
        shot("back-on-the-page")
        # The code answers this browser's step-up for as long as the decision is kept.
        page.goto(admin_url(server, "/account"))
        page.get_by_role("heading", name="Account").wait_for()
    assert refused_by_csp == []
