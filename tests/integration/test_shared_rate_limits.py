"""Two `wakedock serve` replicas on one real Redis and one real PostgreSQL: login failure budgets
are shared and survive restarts, tokens and revocations cross replicas, and a dead limit store
makes login fail closed."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import strong_password
from support.components import PostgresServer, RedisServer, start_redis
from support.login import bearer, login
from support.server import WakeDockProcess, run_cli, wakedock_server

pytestmark = pytest.mark.integration

PER_USERNAME = 5  # the default budgets of S2.3
PER_IP = 10


@dataclass
class Cluster:
    a: WakeDockProcess
    b: WakeDockProcess
    client_a: httpx.Client
    client_b: httpx.Client
    env: dict[str, str]
    data_dir: Path
    redis: RedisServer

    def clients(self) -> tuple[httpx.Client, httpx.Client]:
        return self.client_a, self.client_b

    def create_user(self, username: str, role: str = "viewer") -> str:
        password = strong_password()
        result = run_cli(
            self.data_dir,
            "user",
            "create",
            username,
            "--role",
            role,
            "--password-stdin",
            stdin=password + "\n",
            env=self.env,
        )
        assert result.returncode == 0, result.stderr
        return password


def _client(server: WakeDockProcess) -> httpx.Client:
    verify = server.ssl_context() if server.https else True
    return httpx.Client(base_url=server.base_url, verify=verify, timeout=30)


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert "Too many attempts" in response.json()["detail"]
    assert int(response.headers["Retry-After"]) > 0


def key_file(path: Path) -> Path:
    path.write_text(secrets.token_urlsafe(48))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, postgres: PostgresServer
) -> Iterator[Cluster]:
    """Replicas A and B over HTTPS: one Redis, one PostgreSQL database, one signing key."""
    database = postgres.create_database()
    root = tmp_path_factory.mktemp("replicas")
    for name in ("a", "b"):
        (root / name).mkdir()
    env = {
        "WAKEDOCK_DATABASE__URL": postgres.admin_url(database),
        "WAKEDOCK_RATE_LIMIT__STORAGE_URL": redis_server.url,
        # Production refuses a plain key in the environment: a 0600 file, as deployed.
        "WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE": str(key_file(root / "jwt")),
        # The shared limiter alone: zero trust would refuse these addresses' many failures
        # before the budgets run out (tests/integration/test_zerotrust_server.py).
        "WAKEDOCK_ZEROTRUST__ENABLED": "false",
    }
    # Started one after the other: the first one applies the migrations.
    with (
        wakedock_server(root / "a" / "data", https=True, env=env) as a,
        wakedock_server(root / "b" / "data", https=True, env=env) as b,
        _client(a) as client_a,
        _client(b) as client_b,
    ):
        yield Cluster(a, b, client_a, client_b, env, root / "a" / "data", redis_server)
    postgres.drop_database(database)


@pytest.fixture
def replicas(cluster: Cluster) -> Cluster:
    """The cluster with an empty limit store, so every test starts with full budgets."""
    cluster.redis.flush()
    return cluster


def test_per_username_budget_is_shared_between_replicas(replicas: Cluster) -> None:
    password = replicas.create_user("carol")
    a, b = replicas.clients()
    for attempt in range(PER_USERNAME):
        client = (a, b)[attempt % 2]
        response = login(client, "carol", f"wrong-guess-{attempt}")
        assert response.status_code == 401, (attempt, response.text)
    # The 6th attempt is over the budget on either replica, the right password included
    # (checked before verifying), and whatever the letter case of the name.
    _assert_limited(login(b, "carol", "wrong-guess-6"))
    _assert_limited(login(a, "carol", "wrong-guess-7"))
    _assert_limited(login(a, "carol", password))
    _assert_limited(login(b, "CAROL", password))
    # Another user from the same address is not locked out by carol's budget.
    other = replicas.create_user("dan")
    response = login(b, "dan", other)
    assert response.status_code == 200, response.text


def test_per_ip_budget_is_shared_between_replicas(replicas: Cluster) -> None:
    password = replicas.create_user("erin")
    a, b = replicas.clients()
    # Distinct usernames: only the per-IP budget (every request comes from 127.0.0.1) fills up.
    for attempt in range(PER_IP):
        client = (a, b)[attempt % 2]
        response = login(client, f"nobody-{attempt}", "wrong-password-guess")
        assert response.status_code == 401, (attempt, response.text)
    _assert_limited(login(a, "nobody-new-1", "wrong-password-guess"))
    _assert_limited(login(b, "nobody-new-2", "wrong-password-guess"))
    _assert_limited(login(b, "erin", password))
    _assert_limited(login(a, "erin", password))


def test_limits_survive_a_replica_restart(replicas: Cluster, tmp_path: Path) -> None:
    password = replicas.create_user("frank")
    data_dir = tmp_path / "data"
    with (
        wakedock_server(data_dir, https=False, env=replicas.env) as first,
        _client(first) as client,
    ):
        for attempt in range(PER_USERNAME):
            assert login(client, "frank", f"bad-{attempt}").status_code == 401
        _assert_limited(login(client, "frank", password))
        first_pid = first.process.pid
    assert first.process.poll() is not None  # really stopped
    with (
        wakedock_server(data_dir, https=False, env=replicas.env) as second,
        _client(second) as client,
    ):
        assert second.process.pid != first_pid
        _assert_limited(login(client, "frank", password))
        _assert_limited(login(client, "frank", "bad-again"))
    # And the budget is the one the long-running replicas see too.
    _assert_limited(login(replicas.client_a, "frank", password))


def test_tokens_and_logout_cross_replicas(replicas: Cluster) -> None:
    password = replicas.create_user("grace", role="operator")
    a, b = replicas.clients()
    answer = login(a, "grace", password)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    access = tokens["access_token"]

    # Issued by A, accepted by B (same key, same session store).
    me = b.get("/api/v1/auth/me", headers=bearer(access))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "grace"
    assert a.get("/api/v1/auth/me", headers=bearer(access)).status_code == 200
    # B has now validated (and may cache) the session.

    # A refresh on B works too and its new access token works on A.
    refreshed = b.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    access2 = refreshed.json()["access_token"]
    assert a.get("/api/v1/auth/me", headers=bearer(access2)).status_code == 200
    assert b.get("/api/v1/auth/me", headers=bearer(access2)).status_code == 200

    logout = a.post("/api/v1/auth/logout", headers=bearer(access))
    assert logout.status_code == 204, logout.text
    # A knows at once.
    assert a.get("/api/v1/auth/me", headers=bearer(access)).status_code == 401

    # B notices within its short session cache (at most 2 s).
    deadline = time.monotonic() + 3.5
    statuses: tuple[int, int] = (0, 0)
    while time.monotonic() < deadline:
        statuses = (
            b.get("/api/v1/auth/me", headers=bearer(access)).status_code,
            b.get("/api/v1/auth/me", headers=bearer(access2)).status_code,
        )
        if statuses == (401, 401):
            break
        time.sleep(0.2)
    assert statuses == (401, 401), f"replica B still accepts the logged-out session: {statuses}"
    # The refresh token of the dead session is refused on either replica.
    new_refresh = refreshed.json()["refresh_token"]
    assert b.post("/api/v1/auth/refresh", json={"refresh_token": new_refresh}).status_code == 401


def test_a_token_signed_with_another_key_is_refused(replicas: Cluster, tmp_path: Path) -> None:
    """Shows the cross-replica acceptance above comes from the shared key, not from laxness."""
    password = replicas.create_user("heidi")
    other_env = {
        **replicas.env,
        "WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE": str(key_file(tmp_path / "other-jwt")),
    }
    with (
        wakedock_server(tmp_path / "data", https=False, env=other_env) as stranger,
        _client(stranger) as client,
    ):
        answer = login(client, "heidi", password)
        assert answer.status_code == 200, answer.text
        foreign = answer.json()["access_token"]
        assert client.get("/api/v1/auth/me", headers=bearer(foreign)).status_code == 200
    assert replicas.client_a.get("/api/v1/auth/me", headers=bearer(foreign)).status_code == 401


def test_login_fails_closed_when_redis_is_down(tmp_path: Path) -> None:
    own_redis = start_redis()  # its own instance: the shared one must survive this test
    try:
        data_dir = tmp_path / "data"
        env = {"WAKEDOCK_RATE_LIMIT__STORAGE_URL": own_redis.url}
        password = strong_password()
        created = run_cli(
            data_dir,
            "user",
            "create",
            "ivan",
            "--role",
            "viewer",
            "--password-stdin",
            stdin=password + "\n",
            env=env,
        )
        assert created.returncode == 0, created.stderr
        with wakedock_server(data_dir, https=True, env=env) as server, _client(server) as client:
            # With Redis up: a normal failure and a normal success.
            assert login(client, "ivan", "not-the-password").status_code == 401
            ok = login(client, "ivan", password)
            assert ok.status_code == 200, ok.text
            access = ok.json()["access_token"]

            own_redis.stop()

            for username, guess in [
                ("ivan", password),
                ("ivan", "not-the-password"),
                ("nobody", "whatever-guess"),
                ("ivan", password),
            ]:
                response = login(client, username, guess)
                assert response.status_code == 503, (username, response.status_code, response.text)
                assert "access_token" not in response.text
                assert "redis" not in response.text.lower()  # no internals
            form = client.post(
                "/api/v1/auth/login", data={"username": "ivan", "password": password}
            )
            assert form.status_code == 503
            # Liveness does not depend on the limit store; existing sessions keep working.
            assert client.get("/api/v1/health/live").status_code == 200
            assert client.get("/api/v1/auth/me", headers=bearer(access)).status_code == 200
            assert server.process.poll() is None
            # Readiness says which component is down, and nothing about where it is.
            health = client.get("/api/v1/health")
            assert health.status_code == 503
            assert health.json()["status"] == "down"
            assert health.json()["components"]["rate_limit_store"] == "down"
            assert health.json()["components"]["database"] == "ok"
            assert "redis" not in health.text.lower() and str(own_redis.port) not in health.text
        # Every refused attempt is in the audit trail (which does not depend on Redis).
        with sqlite3.connect(data_dir / "wakedock.db") as db:
            refused = db.execute(
                "SELECT actor, outcome FROM audit_events"
                " WHERE type = 'login_failure' AND details LIKE '%rate-limit store unavailable%'"
            ).fetchall()
        assert sorted(refused) == sorted([("ivan", "denied")] * 4 + [("nobody", "denied")])
    finally:
        if own_redis.process.poll() is None:
            own_redis.stop()
