"""A real browser for the tests: Debian's headless Chromium (/usr/bin/chromium) driven by
Playwright (no browser download), a test certificate it trusts, and screenshots of each step.

All traffic stays on loopback: `localhost` and every `*.localhost` name resolve to 127.0.0.1
inside Chromium, and background networking (updates, sync, QUIC probes) is off. With
WAKEDOCK_TEST_THROUGH_EDGE=1 they resolve to the test's edge instead, which stands in front of
its server (support/browser_edge.py): write URLs with `admin_url` and `site_url`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import strong_password
from support import browser_edge
from support.axe import check_accessibility
from support.login import access_token, bearer
from support.server import WakeDockProcess, run_cli, wakedock_server
from wakedock.server.tls import generate_self_signed

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
# The `shot` fixture: `shot("signed-in")` saves the page as the test's next numbered screenshot.
Shot = Callable[[str], None]


@dataclass(frozen=True)
class BrowserCertificate:
    """A self-signed pair like the one `wakedock serve` generates (localhost, *.localhost)."""

    cert: Path
    key: Path

    @property
    def spki_sha256(self) -> str:
        """What Chromium's --ignore-certificate-errors-spki-list names: this key, and no other."""
        certificate = x509.load_pem_x509_certificate(self.cert.read_bytes())
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def make_certificate(directory: Path) -> BrowserCertificate:
    directory.mkdir(parents=True, exist_ok=True)
    pair = BrowserCertificate(directory / "cert.pem", directory / "key.pem")
    generate_self_signed(pair.cert, pair.key, "localhost", ("*.localhost",))
    return pair


def chromium_args(certificate: BrowserCertificate) -> list[str]:
    return [
        *browser_edge.chromium_args(),
        # Root in a container: Chromium's own sandbox cannot start there.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Trust the test certificate's key only: any other bad certificate still fails.
        f"--ignore-certificate-errors-spki-list={certificate.spki_sha256}",
    ]


@contextmanager
def browser_server(
    data_dir: Path, certificate: BrowserCertificate, env: dict[str, str] | None = None
) -> Iterator[WakeDockProcess]:
    """`wakedock serve` (HTTPS) with the certificate Chromium trusts; through the edge
    (WAKEDOCK_TEST_THROUGH_EDGE=1), with the test's edge in front of it."""
    tls = data_dir / "tls"
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copy(certificate.cert, tls / "cert.pem")
    shutil.copy(certificate.key, tls / "key.pem")
    # These tests drive headless Chromium, which the zero-trust engine rightly scores 40 as an
    # automated browser: one mistyped password then adds enough for a step-up. They are not
    # about the client signal (tests/zerotrust and tests/integration/test_zerotrust_server.py
    # are): it weighs nothing here, every other signal still does. A test may set its own.
    env = {"WAKEDOCK_ZEROTRUST__WEIGHTS": '{"user_agent": 0}', **(env or {})}
    with (
        wakedock_server(data_dir, env=browser_edge.server_settings(env)) as server,
        browser_edge.edge_for(server),
    ):
        yield server


def create_user(data: Path, name: str, role: str) -> str:
    """A user created with the CLI, as an operator would; returns its password."""
    password = strong_password()
    created = run_cli(
        data, "user", "create", name, "--role", role, "--password-stdin", stdin=password + "\n"
    )
    assert created.returncode == 0, created.stderr
    return password


def enrol_by_api(server: WakeDockProcess, name: str, password: str) -> tuple[str, list[str]]:
    """Set up MFA through the API (not what these tests are about): the secret and codes."""
    # The confirmation hashes ten backup codes (argon2): over httpx's default 5 s on a busy
    # 2-core machine (seen at load 11).
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=30) as http:
        auth = bearer(access_token(http, name, password))
        secret = http.post("/api/v1/auth/mfa/setup", headers=auth).json()["secret"]
        code = pyotp.TOTP(secret).now()
        confirmed = http.post("/api/v1/auth/mfa/confirm", headers=auth, json={"code": code})
        assert confirmed.status_code == 200, confirmed.text
        return secret, confirmed.json()["backup_codes"]


def next_code(secret: str) -> str:
    """The code of the next 30 s step: accepted now (one step of skew), and never the step a
    code was just spent for (a replay)."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def wrong_code(secret: str) -> str:
    """A real code of this secret, but from ten minutes ago: outside the accepted window."""
    totp = pyotp.TOTP(secret)
    window = {totp.at(time.time() + shift) for shift in (-30, 0, 30, 60)}
    return next(c for s in range(600, 1200, 30) if (c := totp.at(time.time() - s)) not in window)


def admin_url(server: WakeDockProcess, path: str) -> str:
    """The admin host's `path` as the browser opens it (directly, or through the edge)."""
    return f"{browser_edge.admin_origin(server)}{path}"


def site_url(server: WakeDockProcess, host: str, path: str = "/") -> str:
    """Another host's `path` (`app.localhost`: a service) as the browser opens it."""
    return f"{browser_edge.site_origin(server, host)}{path}"


def sign_in_with_password(page: Any, name: str, password: str) -> None:
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def enter_code(page: Any, code: str) -> None:
    """The code step: an authenticator app's code or a backup code, then Verify."""
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify").click()


def sign_in_with_code(page: Any, name: str, password: str, code: str) -> None:
    """What a user with MFA enrolled does: the sign-in form, then the code step."""
    sign_in_with_password(page, name, password)
    page.get_by_role("heading", name="Two-step verification").wait_for()
    enter_code(page, code)


def text(page: Any) -> str:
    """What the page shows a person."""
    return str(page.locator("body").inner_text())


def enrol_on_the_page(page: Any, shot: Shot) -> str:
    """From the enrolment page: start, read the key, confirm (after one wrong code), check the
    ten backup codes and continue, each page checked by axe-core at both widths. Returns the
    secret, as the person's app now holds it."""
    page.get_by_role("button", name="Start setup").click()
    page.get_by_role("heading", name="Add WakeDock to your authenticator app").wait_for()
    qr = page.get_by_role("img", name="QR code to scan with your authenticator app")
    assert qr.is_visible()
    assert qr.evaluate("image => image.naturalWidth") > 100  # the data: URI image loaded
    secret = str(page.locator("#secret").inner_text()).replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    check_accessibility(page, shot, "scan-the-code")

    page.get_by_label("Code shown by the app").fill(wrong_code(secret))
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("That code did not match").wait_for()
    check_accessibility(page, shot, "wrong-code")

    page.get_by_label("Code shown by the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name="Two-step verification is on").wait_for()
    codes = page.locator("#backup-codes li").all_inner_texts()
    assert len(codes) == 10
    assert all(re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", c.strip()) for c in codes)
    assert "shown only this once" in text(page)
    check_accessibility(page, shot, "backup-codes")
    page.get_by_role("link", name="I saved them, continue").click()
    return secret


class Screenshots:
    """Saves `test-output/browser/<test>/NN-step.png`, numbered in the order taken."""

    def __init__(self, test_name: str) -> None:
        self.directory = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self._count = 0

    def path(self, step: str) -> Path:
        self._count += 1
        return self.directory / f"{self._count:02d}-{step}.png"


FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


def csp_reports(page: Any) -> list[str]:
    """What the tab's console says the Content Security Policy refused, from now on."""
    refused: list[str] = []

    def seen(message: Any) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", seen)
    return refused


def as_another_browser(page: Any, user_agent: str = FIREFOX) -> None:
    """The tab's next requests carry `user_agent` (same cookies): the session as another
    browser would use it."""
    page.context.new_cdp_session(page).send(
        "Network.setUserAgentOverride", {"userAgent": user_agent}
    )
