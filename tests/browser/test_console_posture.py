"""The security posture page in Chromium: an admin signs in with a TOTP code, reads the
measured KPIs (among them an alert a refusing webhook holds back), a user then enrols MFA
through the API and a reload shows the adoption changed.
axe-core finds no serious or critical violation at either width (screenshots saved), and the
page's CSP refuses nothing (the counter the CSP report endpoint keeps).

The real `wakedock serve` over HTTPS, Debian's Chromium.
"""

from __future__ import annotations

import time
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
)
from support.login import login
from support.webhook import webhook_receiver

from .test_dashboard import csp_violations, metrics_token

pytestmark = pytest.mark.integration


def cells(page: Any, row_id: str) -> list[str]:
    return [c.strip() for c in page.locator(f"#{row_id} th, #{row_id} td").all_inner_texts()]


def alerting(webhook: str) -> dict[str, str]:
    """An alert webhook on loopback, and a quick delivery poll."""
    return {
        "WAKEDOCK_ALERTS__WEBHOOKS": f'["{webhook}"]',
        "WAKEDOCK_ALERTS__ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "WAKEDOCK_SIEM__POLL_SECONDS": "0.2",
    }


def test_an_admin_reads_the_posture_and_sees_an_enrolment_counted(
    tmp_path: Path, certificate: BrowserCertificate, page: Any, shot: Shot
) -> None:
    data = tmp_path / "data"
    admin = create_user(data, "ada", "admin")
    viewer = create_user(data, "vera", "viewer")
    watcher = create_user(data, "mona", "operator")  # reads /metrics; never signs in a browser
    with (
        webhook_receiver() as hook,
        browser_server(data, certificate, env=alerting(hook.url)) as server,
    ):
        hook.status = 503  # the alert webhook refuses: the alert waits, listed as failing
        token = metrics_token(server, "mona", watcher)
        secret, _codes = enrol_by_api(server, "ada", admin)
        # A failed sign-in, as anyone can make one: the chart counts it.
        with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
            failed = http.post(
                "/api/v1/auth/login", json={"username": "vera", "password": "x" * 16}
            )
            assert failed.status_code == 401
            # A refresh token spent twice: reuse, high severity, an alert.
            refresh = login(http, "vera", viewer).json()["refresh_token"]
            for _ in range(2):
                http.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
        deadline = time.monotonic() + 30
        while not hook.refused:
            assert time.monotonic() < deadline, "the alert webhook was never tried"
            time.sleep(0.1)

        page.goto(admin_url(server, "/admin/posture"))
        page.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_code(page, "ada", admin, next_code(secret))
        page.wait_for_url(admin_url(server, "/admin/posture"))
        page.get_by_role("heading", name="Security posture", level=1).wait_for()
        assert cells(page, "mfa-admin") == ["admin", "1 of 1", "100.0%", "100%", "yes"]
        assert cells(page, "mfa-viewer") == ["viewer", "0 of 1", "0.0%", "over 80%", "no"]
        summary = page.locator("#chart-failed .summary").inner_text()
        assert summary.startswith("1 failed sign-in in the last 24 hours")
        assert page.locator("#chart-failed rect.bar").count() == 24
        alert = cells(page, "alert-1")
        assert alert[1] == "HIGH: token_reuse (severity:token_reuse)"
        assert alert[3].startswith(
            "failed, retrying (last error: alert webhook 127.0.0.1: HTTP 503"
        )
        assert alert[4] == "not yet"
        check_accessibility(page, shot, "posture", dark=True)

        # The viewer enrols through the API; the page, reloaded, counts it.
        enrol_by_api(server, "vera", viewer)
        page.reload()
        page.get_by_role("heading", name="Security posture", level=1).wait_for()
        assert cells(page, "mfa-viewer") == ["viewer", "1 of 1", "100.0%", "over 80%", "yes"]
        assert cells(page, "mfa-all-users-but-admins")[1:3] == ["1 of 2", "50.0%"]
        shot("posture-after-enrolment")

        # Nothing the page did was refused by its CSP.
        assert csp_violations(server, token) == 0
