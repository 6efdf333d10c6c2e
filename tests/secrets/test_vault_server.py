"""A real `wakedock serve` reading its signing key from a real OpenBao: rotation by the CLI and by
a KV version written straight into OpenBao, both picked up without a restart, old-key tokens
accepted until they expire; a Vault sealed at run time leaves WakeDock serving from memory and
`degraded`, and healthy again once unsealed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa

from conftest import strong_password
from support.login import access_token
from support.openbao import ROOT_TOKEN, BaoServer, start_openbao
from support.server import WakeDockProcess, run_cli, wakedock_server
from wakedock.auth.keys import SigningKey
from wakedock.context import RequestContext

pytestmark = pytest.mark.integration
FIRST_KEY = "first-key-in-openbao-" + "k" * 40


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


def _setup(tmp_path: Path, bao: BaoServer, path: str) -> dict[str, str]:
    bao.client().secrets.kv.v2.create_or_update_secret(
        path=path, secret={"key": FIRST_KEY, "unrelated": "kept"}, mount_point="secret"
    )
    token = tmp_path / "vault-token"
    token.write_text(ROOT_TOKEN)
    token.chmod(0o600)
    config = tmp_path / "wakedock.yaml"
    config.write_text(
        f"auth:\n  jwt_signing_key: secret:{path}#key\n"
        f"secrets:\n  provider: vault\n  vault_url: {bao.url}\n  refresh_seconds: 0.3\n"
    )
    return {"WAKEDOCK_CONFIG": str(config), "WAKEDOCK_SECRETS__VAULT_TOKEN_FILE": str(token)}


def _client(server: WakeDockProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=30)


def _user(data: Path, env: dict[str, str]) -> tuple[str, str]:
    password = strong_password()
    created = run_cli(
        data, "user", "create", "alice", "--role", "viewer", "--password-stdin",
        stdin=password + "\n", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return "alice", password


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _me(client: httpx.Client, token: str) -> int:
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code


def _eventually(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_rotation_through_openbao_without_restart(tmp_path: Path, bao: BaoServer) -> None:
    env = _setup(tmp_path, bao, "wakedock/jwt-rotation")
    data = tmp_path / "data"
    user = _user(data, env)
    with wakedock_server(data, env=env) as server, _client(server) as client:
        first = access_token(client, *user)
        assert _kid(first) == SigningKey.from_secret(FIRST_KEY.encode()).kid

        # 1. The CLI writes version 2 into OpenBao; the running server signs with it.
        rotated = run_cli(data, "secrets", "rotate", "jwt", env=env)
        assert rotated.returncode == 0, rotated.stderr
        assert "version 2 written" in rotated.stdout
        _eventually(
            lambda: _kid(access_token(client, *user)) != _kid(first), "the server to adopt v2"
        )
        second = access_token(client, *user)
        stored = bao.client().secrets.kv.v2.read_secret_version(
            path="wakedock/jwt-rotation", mount_point="secret", raise_on_deleted_version=True
        )["data"]
        assert stored["metadata"]["version"] == 2
        assert stored["data"]["unrelated"] == "kept"  # the other keys of the secret survive
        assert _kid(second) == SigningKey.from_secret(stored["data"]["key"].encode()).kid

        # 2. Someone writes version 3 straight into OpenBao (`bao kv put`): noticed too.
        third_key = "third-key-written-by-an-operator-" + "z" * 30
        bao.client().secrets.kv.v2.create_or_update_secret(
            path="wakedock/jwt-rotation",
            secret={"key": third_key, "unrelated": "kept"},
            mount_point="secret",
        )
        third_kid = SigningKey.from_secret(third_key.encode()).kid
        _eventually(
            lambda: _kid(access_token(client, *user)) == third_kid, "the server to adopt v3"
        )

        # Tokens signed with the earlier keys are still valid (they have not expired).
        assert [_me(client, t) for t in (first, second, access_token(client, *user))] == [
            200,
            200,
            200,
        ]
        # A token signed with a key that was never in OpenBao is refused.
        claims = jwt.decode(first, options={"verify_signature": False})
        stranger = SigningKey.from_secret(b"s" * 48)
        forged = jwt.encode(claims, stranger.secret, algorithm="HS256",
                            headers={"kid": stranger.kid})  # fmt: skip
        assert _me(client, forged) == 401

    # After a restart the keyring is the same: the old tokens still work, v3 signs.
    with wakedock_server(data, env=env) as server, _client(server) as client:
        assert _me(client, first) == 200 and _me(client, second) == 200
        assert _kid(access_token(client, *user)) == third_kid
        log = server.log()

    engine = sa.create_engine(f"sqlite:///{data / 'wakedock.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, details FROM audit_events WHERE type = 'secret_rotation' "
                    "ORDER BY seq")
        ).all()  # fmt: skip
    engine.dispose()
    events = [(actor, json.loads(details)) for actor, details in rows]
    # Each change once, written by whichever process noticed it first (the CLI's own refresh
    # or the server's watcher, for "accepted 2"): cluster/claims.py.
    assert [(d["action"], d["version"]) for _, d in events] == [
        ("rotated", 2),
        ("accepted", 2),
        ("signing", 2),
        ("accepted", 3),
        ("signing", 3),
    ]
    assert events[0][0] == "cli:secrets rotate"
    assert {a for a, _ in events[1:]} <= {"cli:secrets rotate", "system:secrets"}
    for secret in (FIRST_KEY, stored["data"]["key"], third_key):
        assert secret not in log and secret not in json.dumps(events)


def test_sealed_at_run_time_serves_from_memory_and_reports_degraded(
    tmp_path: Path, bao: BaoServer
) -> None:
    env = _setup(tmp_path, bao, "wakedock/jwt-seal")
    data = tmp_path / "data"
    user = _user(data, env)
    with wakedock_server(data, env=env) as server, _client(server) as client:
        assert client.get("/api/v1/health").json()["components"]["secrets"] == "ok"
        token = access_token(client, *user)
        bao.seal()
        try:
            _eventually(
                lambda: client.get("/api/v1/health").json()["components"]["secrets"] == "degraded",
                "health to say degraded",
            )
            # Requests keep working from the keys in memory: old tokens and new logins.
            assert _me(client, token) == 200
            assert _me(client, access_token(client, *user)) == 200
        finally:
            bao.unseal()
        _eventually(
            lambda: client.get("/api/v1/health").json()["components"]["secrets"] == "ok",
            "health to recover once unsealed",
            timeout=30,
        )
        assert "secrets refresh failed" in server.log()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


def test_a_deleted_key_version_is_retired_at_once(
    make_harness: Callable[..., Any], bao: BaoServer
) -> None:
    """The leaked-key runbook: deleting a version in OpenBao ends its tokens at the next refresh
    (and a version signed nothing yet: no grace period applies to a deleted one)."""
    kv = bao.client().secrets.kv.v2
    path = "wakedock/jwt-leak"
    kv.create_or_update_secret(path=path, secret={"key": FIRST_KEY}, mount_point="secret")
    vault = {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN}
    h = make_harness(secrets=vault, auth={"jwt_signing_key": f"secret:{path}#key"})
    old_kid = h.components.keyring.current.kid
    kv.create_or_update_secret(path=path, secret={"key": "n" * 48}, mount_point="secret")
    keys = h.components.jwt_keys
    keys.refresh(RequestContext(actor="test"))
    assert h.components.keyring.get(old_kid) is not None  # the grace period after a rotation
    kv.delete_secret_versions(path=path, versions=[1], mount_point="secret")
    keys.refresh(RequestContext(actor="test"))
    assert h.components.keyring.get(old_kid) is None
    assert h.components.keyring.current.kid == SigningKey.from_secret(b"n" * 48).kid


def test_deleting_the_signing_version_retires_it_and_writes_a_new_one(
    make_harness: Callable[..., Any], bao: BaoServer
) -> None:
    """A compromised current key deleted in OpenBao: its tokens stop at the next pass, an older
    retired key is not brought back, and a fresh version is written."""
    kv = bao.client().secrets.kv.v2
    path = "wakedock/jwt-compromised"
    kv.create_or_update_secret(path=path, secret={"key": FIRST_KEY}, mount_point="secret")
    vault = {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN}
    h = make_harness(secrets=vault, auth={"jwt_signing_key": f"secret:{path}#key"})
    keys = h.components.jwt_keys
    compromised = h.components.keyring.current.kid
    kv.delete_secret_versions(path=path, versions=[1], mount_point="secret")
    keys.tick(RequestContext(actor="test"))
    assert h.components.keyring.get(compromised) is None
    assert keys.newest_version == 2 and keys.current_version == 2
    fresh = kv.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    assert fresh["data"]["metadata"]["version"] == 2
    assert (
        h.components.keyring.current.kid
        == SigningKey.from_secret(fresh["data"]["data"]["key"].encode()).kid
    )


def test_a_new_version_of_another_setting_is_noticed_without_reading_it(
    make_harness: Callable[..., Any], bao: BaoServer
) -> None:
    kv = bao.client().secrets.kv.v2
    kv.create_or_update_secret(path="wakedock/mfa", secret={"key": "m" * 48}, mount_point="secret")
    vault = {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN}
    h = make_harness(secrets=vault, mfa={"encryption_key": "secret:wakedock/mfa#key"})
    watcher = h.components.secret_watcher
    watcher.tick()
    kv.create_or_update_secret(path="wakedock/mfa", secret={"key": "w" * 48}, mount_point="secret")
    watcher.tick()
    watcher.tick()  # noticed once
    with h.components.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT target, details FROM audit_events WHERE type = 'secret_rotation'")
        ).all()
    assert [(t, json.loads(d)["action"], json.loads(d)["source"]) for t, d in rows] == [
        ("mfa.encryption_key", "noticed", "vault:wakedock/mfa (v2)")
    ]
    # The value in use is still the one read at start-up (the MFA key applies at restart).
    assert h.components.settings.mfa.encryption_key.get_secret_value() == "m" * 48


def test_a_new_version_is_audited_once_by_several_processes_on_one_database(
    make_harness: Callable[..., Any], bao: BaoServer
) -> None:
    """Two servers' watchers (two workers, or two replicas) on one database notice the same new
    version: one event, written by the first."""
    kv = bao.client().secrets.kv.v2
    kv.create_or_update_secret(path="wakedock/mfa2", secret={"key": "m" * 48}, mount_point="secret")
    vault = {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN}
    first, second = (
        make_harness(secrets=vault, mfa={"encryption_key": "secret:wakedock/mfa2#key"})
        for _ in range(2)
    )
    assert str(first.components.engine.url) == str(second.components.engine.url)
    kv.create_or_update_secret(path="wakedock/mfa2", secret={"key": "w" * 48}, mount_point="secret")
    for h in (first, second, first, second):
        h.components.secret_watcher.tick()
    with first.components.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT target, details FROM audit_events WHERE type = 'secret_rotation'")
        ).all()
    assert [(t, json.loads(d)["action"], json.loads(d)["source"]) for t, d in rows] == [
        ("mfa.encryption_key", "noticed", "vault:wakedock/mfa2 (v2)")
    ]
