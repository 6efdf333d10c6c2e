"""The console's Users and roles page in Chromium, as an admin uses it: sign in with a TOTP
code, open Users and roles from the console's home, create a user (a weak password refused
beside its field first), then grant it admin: refused without a code, done with a fresh one,
and the `privilege_escalation` event read back through the audit API. An operator (who may
read users through the API) and a viewer each get the 403 page on every console page, and
their forged post is refused. axe-core finds no serious or critical violation at 390 and
1440 px (screenshots of each); zero CSP violations.

The real `wakedock serve` over HTTPS, Debian's Chromium.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from conftest import strong_password
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
    sign_in_with_password,
    text,
)
from support.login import bearer
from support.server import WakeDockProcess

from .test_dashboard import csp_violations, metrics_token

pytestmark = pytest.mark.integration


def fresh_code(secret: str, spent: int) -> str:
    """A code of a step after `spent` (replays are refused) that is accepted now (one step of
    skew): waits, if it must, for the clock's next 30 s step."""
    while int(time.time() // 30) + 1 <= spent:
        time.sleep(0.5)
    return pyotp.TOTP(secret).at(time.time() + 30)


def escalations(server: WakeDockProcess, token: str, target: str) -> list[dict[str, Any]]:
    """The `privilege_escalation` events of `target`, read through the audit API."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
        found = http.get(
            "/api/v1/audit",
            params={"type": "privilege_escalation", "target": target},
            headers=bearer(token),
        )
        assert found.status_code == 200, found.text
    events: list[dict[str, Any]] = found.json()["events"]
    return events


def test_an_admin_creates_a_user_and_grants_it_admin_with_a_code(
    tmp_path: Path, certificate: BrowserCertificate, browser: Any, page: Any, shot: Shot
) -> None:
    data = tmp_path / "data"
    password = create_user(data, "ada", "admin")
    watcher = create_user(data, "mona", "operator")  # reads /metrics and the audit trail
    with browser_server(data, certificate) as server:
        token = metrics_token(server, "mona", watcher)
        secret, _codes = enrol_by_api(server, "ada", password)
        page.goto(admin_url(server, "/admin"))
        page.get_by_role("heading", name="Sign in").wait_for()
        signed_with = next_code(secret)
        spent = int(time.time() // 30) + 1
        sign_in_with_code(page, "ada", password, signed_with)
        page.wait_for_url(admin_url(server, "/admin"))
        # The console's home: a card for each of its six pages.
        cards = page.locator(".console-card h2 a")
        assert cards.all_inner_texts() == [
            "Users and roles", "Sessions", "Audit trail", "Security posture", "Secrets", "Settings"
        ]  # fmt: skip
        check_accessibility(page, shot, "console-home")

        # From the console's home to the list, which shows the admin and the role matrix.
        page.get_by_role("link", name="Users and roles").click()
        page.wait_for_url(admin_url(server, "/admin/users"))
        assert page.locator('tr[data-user="ada"]').is_visible()
        assert page.locator("#matrix").is_visible()
        check_accessibility(page, shot, "users")

        # A new user: the weak password refused beside its field, the name kept; then made.
        page.get_by_label("Username").fill("grace")
        page.get_by_label("Password").fill("grace")
        page.get_by_role("button", name="Create user").click()
        page.locator("#u-password-error").wait_for()
        assert page.get_by_label("Password").get_attribute("aria-invalid") == "true"
        assert page.get_by_label("Username").input_value() == "grace"
        check_accessibility(page, shot, "create-refused")
        page.get_by_label("Password").fill(strong_password())
        page.get_by_role("button", name="Create user").click()
        page.wait_for_url(admin_url(server, "/admin/users?done=created&user=grace"))
        assert page.get_by_role("status").inner_text() == "User grace created."

        # The last sign-in filter: grace never signed in, ada just did (mona through the API).
        page.get_by_label("Last sign-in").select_option("never")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r".*/admin/users\?.*signed_in=never.*"))
        listed = page.locator("#users tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.user)"
        )
        assert listed == ["grace"]
        check_accessibility(page, shot, "users-never-signed-in")
        page.get_by_label("Last sign-in").select_option("recent")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r".*/admin/users\?.*signed_in=recent.*"))
        listed = page.locator("#users tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.user)"
        )
        assert "grace" not in listed and {"ada", "mona"} <= set(listed)
        shot("users-signed-in-lately")
        page.goto(admin_url(server, "/admin/users"))

        # Her page; admin without a code is refused by the browser and then by the server.
        page.get_by_role("link", name="grace", exact=True).click()
        page.wait_for_url(admin_url(server, "/admin/users/grace"))
        check_accessibility(page, shot, "user")
        page.get_by_label("New role").select_option("admin")
        form = page.locator('form[action="/admin/users/grace/role"]')
        form.evaluate("f => f.noValidate = true")  # past the field's `required`: the server's word
        page.get_by_role("button", name="Change role").click()
        page.locator("#role-error").wait_for()
        assert "needs a current code" in page.locator("#role-error").inner_text()
        assert page.locator('[data-field="role"]').inner_text() == "viewer"
        assert escalations(server, token, "grace") == []
        check_accessibility(page, shot, "role-refused")

        # With a fresh code from the app: granted, and the escalation is in the audit trail.
        page.get_by_label("New role").select_option("admin")
        page.locator("#role-code").fill(fresh_code(secret, spent))
        page.get_by_role("button", name="Change role").click()
        page.wait_for_url(admin_url(server, "/admin/users/grace?done=role"))
        assert page.locator('[data-field="role"]').inner_text() == "admin"
        assert page.get_by_role("status").inner_text() == "User grace has the role chosen."
        [event] = escalations(server, token, "grace")
        assert event["actor"] == "ada" and event["details"] == {"to": "admin", "from": "viewer"}
        check_accessibility(page, shot, "role-granted")

        assert csp_violations(server, token) == 0


CONSOLE_PAGES = (
    "/admin",
    "/admin/users",
    "/admin/sessions",
    "/admin/audit",
    "/admin/posture",
    "/admin/secrets",
    "/admin/settings",
)
PEOPLE = (("olga", "operator"), ("vera", "viewer"))
# A developer, not an admin: granting admin would also be refused for want of a fresh code, which
# would hide a missing role check. The page's answer: its status and what it says.
FORGE = """async ([csrf, password]) => {
  const body = new URLSearchParams({csrf_token: csrf, username: 'mallory', password,
                                    role: 'developer'});
  const answer = await fetch('/admin/users', {method: 'POST', body});
  return [answer.status, await answer.text()];
}"""


@pytest.mark.security
def test_an_operator_and_a_viewer_get_the_403_page_on_every_console_page_and_a_forged_post_refused(
    tmp_path: Path, certificate: BrowserCertificate, browser: Any, page: Any, shot: Shot
) -> None:
    data = tmp_path / "data"
    # Neither role holds console:read; the operator holds users:read and metrics:read.
    people = [(name, create_user(data, name, role), role) for name, role in PEOPLE]
    with browser_server(data, certificate) as server:
        token = metrics_token(server, "olga", people[0][1])
        # Each, in turn, in the same browser: signed in, refused, then signed out.
        for name, password, role in people:
            page.goto(admin_url(server, "/services"))
            page.get_by_role("heading", name="Sign in").wait_for()
            sign_in_with_password(page, name, password)
            page.wait_for_url(admin_url(server, "/services"))
            assert page.get_by_role("link", name="Admin", exact=True).count() == 0, role
            csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
            for path in CONSOLE_PAGES:
                answer = page.goto(admin_url(server, path))
                assert answer is not None and answer.status == 403, (role, path)
                assert "Only administrators may open the admin console." in text(page), (role, path)
            check_accessibility(page, shot, f"refused-{role}")
            # The person's own session's token, sent from the console's origin: still refused.
            status, said = page.evaluate(FORGE, [csrf, strong_password()])
            assert status == 403 and "Only administrators may open the admin console." in said, role
            page.get_by_role("link", name="Services").click()
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("heading", name="Sign in").wait_for()
        with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
            users = http.get("/api/v1/users", headers=bearer(token))
            assert users.status_code == 200, users.text
            assert "mallory" not in {u["username"] for u in users.json()}
        assert csp_violations(server, token) == 0
