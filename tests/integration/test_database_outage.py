"""A real `wakedock serve` whose database goes away and comes back: a real PostgreSQL stopped
mid-run, and SQLite on a small tmpfs filled up. Requests get a 503 naming the database (with
Retry-After), the log says so once, not once per request, audited actions do not happen, and
everything works again once the database is back."""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import strong_password
from support.components import PostgresServer, start_postgres, unavailable
from support.login import login
from support.server import run_cli, wakedock_server

pytestmark = pytest.mark.integration

OUTAGE_LINE = "the database is unavailable ("
RECOVERY_LINE = "the database is available again"


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    # Its own server: the session's shared one must not go away under other tests.
    server = start_postgres()
    yield server
    server.stop()


def _assert_database_unavailable(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["Retry-After"]) > 0
    body = reply.json()
    assert body["code"] == "dependency_unavailable"
    assert body["detail"] == "the database is unavailable"
    assert body["dependency"] == "database"
    assert "127.0.0.1" not in reply.text and "psycopg" not in reply.text.lower()


def test_postgresql_stopping_mid_run_is_a_503_logged_once_and_recovers(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_DATABASE__URL": own_postgres.admin_url()}
    password = strong_password()
    created = run_cli(
        data, "user", "create", "olga", "--role", "viewer", "--password-stdin",
        stdin=password + "\n", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with (
        wakedock_server(data, env=env) as server,
        httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=30) as client,
    ):
        signed_in = login(client, "olga", password)
        assert signed_in.status_code == 200, signed_in.text
        bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

        own_postgres.pause()
        for _ in range(20):
            _assert_database_unavailable(login(client, "olga", password))
            _assert_database_unavailable(client.get("/api/v1/services", headers=bearer))
        # An audited action whose event cannot be written does not happen.
        _assert_database_unavailable(client.post("/api/v1/auth/logout", headers=bearer))
        health = client.get("/api/v1/health")
        assert health.status_code == 503
        assert health.json()["components"]["database"] == "down"
        # A service host too, once its host map (kept a second) is due for a reload.
        deadline = time.monotonic() + 15
        while (page := client.get("/", headers={"Host": "app.localhost"})).status_code == 404:
            assert time.monotonic() < deadline, "the host map was never reloaded"
            time.sleep(0.2)
        assert page.status_code == 503 and page.headers["Retry-After"]
        assert "cannot reach its database" in page.text
        during = server.log()

        own_postgres.resume()
        again = login(client, "olga", password)
        assert again.status_code == 200, again.text
        assert client.get("/api/v1/services", headers=bearer).status_code == 200
        assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200  # not logged out
        # Health reports are kept a second or two: the next one sees the database back.
        deadline = time.monotonic() + 15
        while client.get("/api/v1/health").status_code != 200:
            assert time.monotonic() < deadline, "health did not recover"
            time.sleep(0.2)
        after = server.log()
    assert during.count(OUTAGE_LINE) == 1, during
    assert "Traceback" not in during and "internal_error" not in during
    assert after.count(RECOVERY_LINE) == 1, after
    assert after.count(OUTAGE_LINE) == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A data directory on a 32 MiB tmpfs of its own, to fill up without touching the machine's
    disks (the server's log is written beside it, on the ordinary disk)."""
    mount_point = tmp_path / "data"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the disk refuses more; returns it (delete it to free the space)."""
    filler = directory / "filler"
    assert _write_until_refused(filler, b"\0" * 65536) == errno.ENOSPC
    _write_until_refused(filler, b"\0")  # the last partial block too
    return filler


def _write_until_refused(path: Path, chunk: bytes) -> int | None:
    with open(path, "ab", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                return exc.errno


def test_a_full_disk_under_sqlite_is_a_503_naming_the_database_and_its_disk(
    small_disk: Path,
) -> None:
    data = small_disk
    password = strong_password()
    created = run_cli(
        data, "user", "create", "petra", "--role", "viewer", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with (
        wakedock_server(data) as server,
        httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=30) as client,
    ):
        assert login(client, "petra", password).status_code == 200
        filler = _fill(small_disk)
        replies = [login(client, "petra", password) for _ in range(30)]
        full = [r for r in replies if r.status_code != 200]
        assert full, "every login was written although the disk is full"
        for reply in full:
            assert reply.status_code == 503, reply.text
            assert reply.json()["code"] == "dependency_unavailable"
            assert reply.json()["detail"] == "the database is unavailable: its disk is full"
            assert reply.json()["dependency"] == "database"
            assert reply.headers["Retry-After"]
        during = server.log()
        filler.unlink()
        assert login(client, "petra", password).status_code == 200
        after = server.log()
    assert during.count(OUTAGE_LINE) == 0 and during.count("its disk is full (") == 1, during
    assert "Traceback" not in during
    assert after.count(RECOVERY_LINE) == 1, after
