"""No default credentials; the first admin through the one-time setup token or the CLI; and
`wakedock user disable` from another process revoking live sessions on a running server."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pyotp
import pytest

from conftest import strong_password
from support.login import bearer, login
from support.server import WakeDockProcess, run_cli, wakedock_server

pytestmark = pytest.mark.integration

_TOKEN_LINE = re.compile(r"one-time setup token[^\n]*\n\s*([A-Za-z0-9_-]{32,})\s*$", re.MULTILINE)


def _client(server: WakeDockProcess) -> httpx.Client:
    verify = server.ssl_context() if server.https else True
    return httpx.Client(base_url=server.base_url, verify=verify, timeout=30)


def _setup_token(server: WakeDockProcess) -> str:
    found = _TOKEN_LINE.findall(server.log())
    assert len(found) == 1, f"expected exactly one setup token in:\n{server.log()}"
    return str(found[0])


def test_no_default_credentials_on_fresh_install(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with wakedock_server(data_dir, https=True) as server, _client(server) as client:
        for username, password in [
            ("admin", "admin"),
            ("admin", "admin123"),
            ("admin", "password"),
            ("root", "root"),
            ("wakedock", "wakedock"),
        ]:
            response = login(client, username, password)
            assert response.status_code == 401, (username, password, response.text)
            assert response.json()["detail"] == "Invalid username or password"
            assert "access_token" not in response.text
        # Form-encoded logins get the same answer.
        response = client.post(
            "/api/v1/auth/login", data={"username": "admin", "password": "admin"}
        )
        assert response.status_code == 401
        # A fresh install has no account at all: it asks for the first admin instead.
        assert "No user exists yet" in server.log()
    listed = run_cli(data_dir, "user", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip().splitlines()[1:] == [], listed.stdout


def test_setup_token_creates_first_admin_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    password = strong_password()
    with wakedock_server(data_dir, https=True) as server, _client(server) as client:
        token = _setup_token(server)
        assert "valid until" in server.log()

        # A wrong token is refused and does not burn the real one.
        for wrong in ["x" * 43, token[:-1] + ("A" if token[-1] != "A" else "B"), ""]:
            response = client.post(
                "/api/v1/auth/setup",
                json={"token": wrong, "username": "root-admin", "password": password},
            )
            assert response.status_code in (403, 400, 422), response.text
            if wrong:
                assert response.status_code == 403, response.text

        response = client.post(
            "/api/v1/auth/setup",
            json={"token": token, "username": "firstadmin", "password": password},
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["username"] == "firstadmin"
        assert created["role"] == "admin"
        assert "password" not in response.text and "hash" not in response.text

        # The token was one-time: a second use is refused, even for another username.
        for username in ("secondadmin", "firstadmin"):
            again = client.post(
                "/api/v1/auth/setup",
                json={"token": token, "username": username, "password": strong_password()},
            )
            assert again.status_code == 403, again.text
        assert login(client, "secondadmin", password).status_code == 401

        # The new admin logs in and is an admin.
        answer = login(client, "firstadmin", password)
        assert answer.status_code == 200, answer.text
        access = answer.json()["access_token"]
        me = client.get("/api/v1/auth/me", headers=bearer(access))
        assert me.status_code == 200
        assert me.json()["username"] == "firstadmin"
        assert me.json()["role"] == "admin"
        # MFA is mandatory for admins: nothing but enrolment until a device is confirmed.
        users = client.get("/api/v1/users", headers=bearer(access))
        assert users.status_code == 403
        assert users.json()["code"] == "mfa_enrollment_required"
        setup = client.post("/api/v1/auth/mfa/setup", headers=bearer(access))
        assert setup.status_code == 200, setup.text
        code = pyotp.TOTP(setup.json()["secret"]).now()
        confirm = client.post(
            "/api/v1/auth/mfa/confirm", headers=bearer(access), json={"code": code}
        )
        assert confirm.status_code == 200, confirm.text
        users = client.get("/api/v1/users", headers=bearer(access))
        assert users.status_code == 200
        assert [u["username"] for u in users.json()] == ["firstadmin"]

    # A restart with a user present prints no new setup token.
    with wakedock_server(data_dir, https=False) as restarted:
        assert "setup token" not in restarted.log()
        assert _TOKEN_LINE.search(restarted.log()) is None


def test_cli_user_create_enforces_password_policy(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for weak in ["password123\n", "opsadmin-opsadmin\n"]:
        result = run_cli(
            data_dir,
            "user",
            "create",
            "opsadmin",
            "--role",
            "admin",
            "--password-stdin",
            stdin=weak,
        )
        assert result.returncode != 0, (weak, result.stdout)
        assert "password does not meet security requirements" in result.stderr, result.stderr
        assert "created user" not in result.stdout
    listed = run_cli(data_dir, "user", "list")
    assert listed.returncode == 0, listed.stderr
    assert "opsadmin" not in listed.stdout

    password = strong_password()
    created = run_cli(
        data_dir,
        "user",
        "create",
        "opsadmin",
        "--role",
        "admin",
        "--email",
        "ops@example.com",
        "--password-stdin",
        stdin=password + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created user opsadmin (role admin" in created.stdout
    assert password not in created.stdout + created.stderr

    listed = run_cli(data_dir, "user", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [row[1:] for row in rows] == [["opsadmin", "admin", "active", "ops@example.com"]]

    # The same name twice is refused.
    duplicate = run_cli(
        data_dir,
        "user",
        "create",
        "opsadmin",
        "--role",
        "viewer",
        "--password-stdin",
        stdin=strong_password() + "\n",
    )
    assert duplicate.returncode != 0

    # The password was stored exactly as typed (no trailing newline): it logs in.
    with wakedock_server(data_dir, https=True) as server, _client(server) as client:
        assert "setup token" not in server.log()  # a user exists: no setup token
        assert login(client, "opsadmin", password).status_code == 200
        assert login(client, "opsadmin", password + "\n").status_code == 401


def test_cli_disable_revokes_live_sessions_on_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    admin_password, user_password = strong_password(), strong_password()
    assert (
        run_cli(
            data_dir,
            "user",
            "create",
            "boss",
            "--role",
            "admin",
            "--password-stdin",
            stdin=admin_password + "\n",
        ).returncode
        == 0
    )
    assert (
        run_cli(
            data_dir,
            "user",
            "create",
            "mallory",
            "--role",
            "operator",
            "--password-stdin",
            stdin=user_password + "\n",
        ).returncode
        == 0
    )

    with wakedock_server(data_dir, https=True) as server, _client(server) as client:
        admin = login(client, "boss", admin_password)
        assert admin.status_code == 200, admin.text
        admin_access = admin.json()["access_token"]
        first = login(client, "mallory", user_password)
        second = login(client, "mallory", user_password)
        assert first.status_code == second.status_code == 200
        tokens = [first.json()["access_token"], second.json()["access_token"]]
        refresh = first.json()["refresh_token"]
        for access in tokens:
            # Validated now, so the server holds the session in its short cache.
            assert client.get("/api/v1/auth/me", headers=bearer(access)).status_code == 200

        disabled = run_cli(data_dir, "user", "disable", "mallory")
        assert disabled.returncode == 0, disabled.stderr
        assert "disabled" in disabled.stdout

        # Another process changed the database: the server notices within seconds.
        deadline = time.monotonic() + 5
        statuses: list[int] = []
        while time.monotonic() < deadline:
            statuses = [
                client.get("/api/v1/auth/me", headers=bearer(t)).status_code for t in tokens
            ]
            if statuses == [401, 401]:
                break
            time.sleep(0.2)
        assert statuses == [401, 401], f"sessions still accepted 5 s after disable: {statuses}"

        # The refresh token and a new login are dead too.
        assert (
            client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
        )
        assert login(client, "mallory", user_password).status_code == 401

        # Other users' sessions are untouched.
        me = client.get("/api/v1/auth/me", headers=bearer(admin_access))
        assert me.status_code == 200 and me.json()["username"] == "boss"

    listed = run_cli(data_dir, "user", "list")
    assert any(
        line.split()[1:4] == ["mallory", "operator", "disabled"]
        for line in listed.stdout.splitlines()[1:]
    ), listed.stdout
