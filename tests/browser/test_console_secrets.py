"""The console's Secrets and Settings pages in Chromium, as an admin uses them: sign in with a
code, open a service's secret kept in a real OpenBao (key names and versions, no value), try to
reveal it with a wrong code (refused), reveal it with a fresh code (shown once, on an answer the
browser does not keep; reloading does not show it again), then read the settings (each secret
as its source). The value is in no server log line and in nothing Chromium stored on disk.
Screenshots at 1440 and 390 px, axe-core at both widths, zero CSP violations.

The real `wakedock serve` over HTTPS, a real OpenBao dev server, Debian's Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from support.axe import WIDE, check_accessibility
from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    browser_server,
    create_user,
    enrol_by_api,
    enter_code,
    next_code,
    sign_in_with_password,
    text,
    wrong_code,
)
from support.openbao import ROOT_TOKEN, BaoServer, start_openbao

pytestmark = pytest.mark.integration
VALUE = "browser-revealed-smtp-password-" + "r" * 12


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[BaoServer]:
    server = start_openbao(tmp_path)
    server.client().secrets.kv.v2.create_or_update_secret(
        path="services/mailer/smtp", secret={"password": VALUE}, mount_point="secret"
    )
    yield server
    server.stop()


def _vault_env(tmp_path: Path, bao: BaoServer) -> dict[str, str]:
    token = tmp_path / "vault-token"
    token.write_text(ROOT_TOKEN)
    token.chmod(0o600)
    return {
        "WAKEDOCK_SECRETS__PROVIDER": "vault",
        "WAKEDOCK_SECRETS__VAULT_URL": bao.url,
        "WAKEDOCK_SECRETS__VAULT_TOKEN_FILE": str(token),
    }


def _stored_anywhere(directory: Path, needle: bytes) -> list[str]:
    """The files under `directory` (Chromium's profile: its HTTP cache, history, session
    restore) holding `needle`."""
    return [str(p) for p in directory.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_an_admin_reveals_a_secret_once_after_a_code_and_reads_the_settings(
    tmp_path: Path,
    certificate: BrowserCertificate,
    bao: BaoServer,
    browser: Any,
    page: Any,
    shot: Shot,
) -> None:
    data = tmp_path / "data"
    env = _vault_env(tmp_path, bao)
    password = create_user(data, "ada", "admin")
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    with browser_server(data, certificate, env) as server:
        secret, backup_codes = enrol_by_api(server, "ada", password)
        page.set_viewport_size(WIDE)

        # Signed out, the page sends to sign-in, and comes back after the code step (a backup
        # code: the app's code of this step went to the enrolment).
        page.goto(admin_url(server, "/admin/secrets"))
        page.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_password(page, "ada", password)
        page.get_by_role("heading", name="Two-step verification").wait_for()
        enter_code(page, backup_codes[0])
        page.wait_for_url(admin_url(server, "/admin/secrets"))
        page.get_by_role("heading", name="Secrets", exact=True).wait_for()

        # Folder, then the secret: its key names and version, not its value.
        page.get_by_role("link", name="mailer/").click()
        page.get_by_role("link", name="smtp").click()
        page.wait_for_url(admin_url(server, "/admin/secrets?path=mailer%2Fsmtp"))
        assert page.locator("#secret-keys").inner_text() == "password"
        assert page.locator("#secret-version").inner_text() == "1"
        assert VALUE not in page.content()
        check_accessibility(page, shot, "secret")

        # A wrong code: refused, next to the form, no value.
        code_field = page.get_by_label("Code from your app (to reveal the values)")
        code_field.fill(wrong_code(secret))
        page.get_by_role("button", name="Reveal the values").click()
        page.get_by_text("That code is not valid or was already used").wait_for()
        assert VALUE not in page.content()

        # A fresh code: the value, on the answer to the post only, never kept by the browser.
        code_field.fill(next_code(secret))
        with page.expect_response(lambda r: r.url.endswith("/admin/secrets/reveal")) as answer:
            page.get_by_role("button", name="Reveal the values").click()
        assert answer.value.status == 200
        assert answer.value.headers["cache-control"] == "no-store"
        assert "/admin/secrets/reveal" in page.url and VALUE not in page.url
        page.get_by_role("heading", name="Values of version 1").wait_for()
        assert page.locator(".revealed-values dd").inner_text() == VALUE
        check_accessibility(page, shot, "revealed")

        # A reload posts the spent code again (the browser asks first: yes): refused.
        page.once("dialog", lambda dialog: dialog.accept())
        page.reload()
        page.get_by_text("That code is not valid or was already used").wait_for()
        assert VALUE not in page.content()
        page.get_by_role("link", name="All secrets").click()
        page.wait_for_url(admin_url(server, "/admin/secrets"))
        # Back to the post's answer: the browser kept nothing of it to show (it would have to
        # post again, and asks: its "Confirm Form Resubmission" page).
        with pytest.raises(PlaywrightError, match="ERR_CACHE_MISS"):
            page.go_back()
        page.wait_for_url("chrome-error://chromewebdata/")
        page.wait_for_load_state()
        page.goto(admin_url(server, "/admin/secrets"))

        # The settings: each secret as where it comes from.
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
        page.get_by_role("link", name="Settings").click()
        page.get_by_role("heading", name="Settings", exact=True).wait_for()
        assert page.locator("#secrets-provider").inner_text() == "vault"
        token_row = page.locator("tr", has=page.locator("code", has_text="vault_token"))
        assert "file (WAKEDOCK_SECRETS__VAULT_TOKEN_FILE)" in token_row.inner_text()
        assert ROOT_TOKEN not in text(page) and VALUE not in text(page)
        check_accessibility(page, shot, "settings")

        server_log = server.log()
    assert VALUE not in server_log
    assert _stored_anywhere(tmp_path / "chromium-profile", VALUE.encode()) == []
    assert violations == []
