"""MFA with real, independent clients: codes computed by `oathtool` (OATH Toolkit, not the
library the server uses), the QR code read back by `zbarimg` (zbar-tools), a real `wakedock
serve` process, and `wakedock user mfa-reset` run from another process."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from conftest import Harness, strong_password
from support.components import unavailable
from support.server import WakeDockProcess, run_cli, wakedock_server
from wakedock.audit.models import AuditEvent
from wakedock.auth.models import User
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.integration

MFA = "/api/v1/auth/mfa"
ME = "/api/v1/auth/me"


@pytest.fixture(autouse=True)
def real_clients() -> None:
    for tool, package in (("oathtool", "oathtool"), ("zbarimg", "zbar-tools")):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install {package})")


def oathtool(secret: str, at: float | None = None) -> str:
    """The TOTP code of `secret` computed by oathtool, now or at the Unix time `at`."""
    args = ["oathtool", "--totp", "-b"]
    if at is not None:
        args += ["-N", f"@{int(at)}"]
    done = subprocess.run([*args, secret], capture_output=True, text=True, timeout=30, check=True)
    code = done.stdout.strip()
    assert code.isdigit() and len(code) == 6, done.stdout
    return code


def zbarimg(png: bytes, tmp_path: Path) -> str:
    """What a real QR decoder reads in the PNG."""
    image = tmp_path / f"qr-{time.monotonic_ns()}.png"
    image.write_bytes(png)
    done = subprocess.run(
        ["zbarimg", "--raw", "-q", str(image)], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().rstrip("\n")


def secret_of(uri: str) -> str:
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp"), uri
    [secret] = parse_qs(parts.query)["secret"]
    return secret


# -- a harness on the real system clock -----------------------------------------------------
def test_qr_code_decodes_to_the_exact_otpauth_uri(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    h = make_harness()
    for username, email in (("plain", None), ("vera", "vera.ops+mfa@example.com")):
        name, password = h.create_user(username, Role.VIEWER, email=email)
        token = h.login(name, password)["access_token"]
        setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
        assert setup.status_code == 200, setup.text
        body = setup.json()
        decoded = zbarimg(base64.b64decode(body["qr_png_base64"]), tmp_path)
        assert decoded == body["otpauth_uri"]
        assert "issuer=WakeDock" in decoded
        assert secret_of(decoded) == body["secret"]


def test_oathtool_codes_confirm_enrolment_and_complete_login(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    h = make_harness()  # the real SystemClock: server and oathtool read the same time
    name, password = h.create_user("vera", Role.VIEWER, email="vera@example.com")
    token = h.login(name, password)["access_token"]
    setup = h.client.post(f"{MFA}/setup", headers=h.bearer(token))
    assert setup.status_code == 200, setup.text
    # As a phone would: scan the QR code, take the secret from the URI, compute the code.
    uri = zbarimg(base64.b64decode(setup.json()["qr_png_base64"]), tmp_path)
    secret = secret_of(uri)

    wrong = oathtool(secret, at=time.time() - 300)  # a real code, ten steps old
    refused = h.client.post(f"{MFA}/confirm", headers=h.bearer(token), json={"code": wrong})
    assert refused.status_code == 400, refused.text

    confirm = h.client.post(
        f"{MFA}/confirm", headers=h.bearer(token), json={"code": oathtool(secret)}
    )
    assert confirm.status_code == 200, confirm.text
    assert len(confirm.json()["backup_codes"]) == 10
    assert h.client.post("/api/v1/auth/logout", headers=h.bearer(token)).status_code == 204

    login = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert login.status_code == 200 and login.json()["requires_mfa"] is True
    # The next step's code (one step of skew is allowed; this step is spent by the confirm).
    verified = h.client.post(
        f"{MFA}/verify",
        json={
            "challenge_token": login.json()["challenge_token"],
            "code": oathtool(secret, at=time.time() + 30),
        },
    )
    assert verified.status_code == 200, verified.text
    me = h.client.get(ME, headers=h.bearer(verified.json()["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == name


# -- a real server and the CLI in other processes -------------------------------------------
def _client(server: WakeDockProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=30)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _create(data_dir: Path, username: str, role: str, password: str) -> None:
    created = run_cli(
        data_dir, "user", "create", username, "--role", role, "--password-stdin", stdin=password
    )
    assert created.returncode == 0, created.stderr


def _wait_for_status(client: httpx.Client, tokens: list[str], status: int) -> list[int]:
    deadline = time.monotonic() + 5
    seen: list[int] = []
    while time.monotonic() < deadline:
        seen = [client.get(ME, headers=_bearer(t)).status_code for t in tokens]
        if all(s == status for s in seen):
            break
        time.sleep(0.2)
    return seen


def test_real_server_enrolment_login_and_cli_mfa_reset(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    password = strong_password()
    _create(data_dir, "vera", "viewer", password)
    credentials = {"username": "vera", "password": password}

    with wakedock_server(data_dir, https=True) as server, _client(server) as client:
        first = client.post("/api/v1/auth/login", json=credentials)
        assert first.status_code == 200, first.text
        token = first.json()["access_token"]
        setup = client.post(f"{MFA}/setup", headers=_bearer(token))
        assert setup.status_code == 200, setup.text
        uri = zbarimg(base64.b64decode(setup.json()["qr_png_base64"]), tmp_path)
        assert uri == setup.json()["otpauth_uri"]
        secret = secret_of(uri)
        confirm = client.post(
            f"{MFA}/confirm", headers=_bearer(token), json={"code": oathtool(secret)}
        )
        assert confirm.status_code == 200, confirm.text
        backup = confirm.json()["backup_codes"]

        # Password alone: a challenge; the oathtool code completes it.
        challenged = client.post("/api/v1/auth/login", json=credentials)
        assert challenged.status_code == 200 and challenged.json()["requires_mfa"] is True
        assert "access_token" not in challenged.text
        verified = client.post(
            f"{MFA}/verify",
            json={
                "challenge_token": challenged.json()["challenge_token"],
                "code": oathtool(secret, at=time.time() + 30),
            },
        )
        assert verified.status_code == 200, verified.text
        # A second session in one step, with a backup code.
        one_step = client.post("/api/v1/auth/login", json={**credentials, "code": backup[0]})
        assert one_step.status_code == 200, one_step.text
        tokens = [token, verified.json()["access_token"], one_step.json()["access_token"]]
        assert _wait_for_status(client, tokens, 200) == [200, 200, 200]

        # Lost device: the operator resets MFA from the command line, in another process.
        missing = run_cli(data_dir, "user", "mfa-reset", "nobody")
        assert missing.returncode != 0 and "MFA reset" not in missing.stdout
        reset = run_cli(data_dir, "user", "mfa-reset", "vera")
        assert reset.returncode == 0, reset.stderr
        assert "MFA reset for vera; 3 session(s) revoked" in reset.stdout
        assert secret not in reset.stdout + reset.stderr

        # The running server stops accepting the sessions within its short cache time.
        seen = _wait_for_status(client, tokens, 401)
        assert seen == [401, 401, 401], f"sessions still accepted 5 s after mfa-reset: {seen}"

        # The password alone opens a session again; MFA is off until re-enrolled.
        again = client.post("/api/v1/auth/login", json=credentials)
        assert again.status_code == 200 and "access_token" in again.json(), again.text
        status = client.get(MFA, headers=_bearer(again.json()["access_token"]))
        assert status.json()["enabled"] is False
        assert status.json()["backup_codes_remaining"] == 0

    with sqlite3.connect(data_dir / "wakedock.db") as db:
        rows = db.execute(
            "SELECT actor, target, details FROM audit_events WHERE type = 'mfa_reset'"
        ).fetchall()
        sealed = db.execute("SELECT mfa_secret FROM users WHERE username = 'vera'").fetchone()
        backup_left = db.execute("SELECT COUNT(*) FROM mfa_backup_codes").fetchone()
    assert len(rows) == 1
    actor, target, details = rows[0]
    assert actor.startswith("cli:") and target == "vera"
    assert json.loads(details)["sessions_revoked"] == 3
    assert sealed == (None,) and backup_left == (0,)


def test_cli_mfa_reset_on_the_configured_database(
    make_harness: Callable[..., Harness], database_url: str
) -> None:
    """`wakedock user mfa-reset` against the same database as a running instance (SQLite and
    PostgreSQL): MFA cleared, that user's sessions ended, others untouched."""
    clock = FakeClock()
    h = make_harness(clock=clock)
    name, password = h.create_user("vera", Role.VIEWER)
    token = h.login(name, password)["access_token"]
    h.enrol_mfa(name, token)
    other = h.login(*h.create_user("bystander", Role.VIEWER))["access_token"]
    data_dir = h.components.settings.data_dir

    reset = run_cli(
        data_dir, "user", "mfa-reset", "VERA", env={"WAKEDOCK_DATABASE__URL": database_url}
    )
    assert reset.returncode == 0, reset.stderr
    assert "MFA reset for vera; 1 session(s) revoked" in reset.stdout

    clock.advance(h.components.settings.auth.session_cache_seconds + 1)
    assert h.client.get(ME, headers=h.bearer(token)).status_code == 401
    assert h.client.get(ME, headers=h.bearer(other)).status_code == 200
    with h.components.db() as db:
        user = db.execute(select(User).where(User.username == name)).scalar_one()
        assert (user.mfa_enabled, user.mfa_secret) == (False, None)
        [row] = db.execute(select(AuditEvent).where(AuditEvent.type == "mfa_reset")).scalars()
        assert row.target == name and (row.actor or "").startswith("cli:")
    login = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    body: dict[str, Any] = login.json()
    assert login.status_code == 200 and "access_token" in body and "requires_mfa" not in body
