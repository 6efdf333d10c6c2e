"""A service's `secret:` environment with a real `wakedock serve`, a real OpenBao (AppRole login,
a policy that denies one path) and the real Docker engine: `docker inspect` of the running
container shows the value, where it must go; the database file, the API replies, the audit
export, `wakedock service inspect` and the server log do not contain it. A new KV version is used
from the next start."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from conftest import strong_password
from support.docker_images import TEST_IMAGE
from support.openbao import BaoServer, start_openbao
from support.server import run_cli, wakedock_server

pytestmark = pytest.mark.integration

SERVICE = "billing"
POLICY = f"""
path "secret/data/services/{SERVICE}/*" {{ capabilities = ["read"] }}
path "secret/data/services/{SERVICE}/denied" {{ capabilities = ["deny"] }}
"""


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


def _approle(bao: BaoServer, tmp_path: Path) -> tuple[str, Path]:
    root = bao.client()
    root.sys.create_or_update_policy(name="wakedock-services", policy=POLICY)
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.write("auth/approle/role/services", token_policies=["wakedock-services"], token_ttl="1h")
    role_id = str(root.read("auth/approle/role/services/role-id")["data"]["role_id"])
    secret_id = tmp_path / "secret_id"
    secret_id.write_text(root.write("auth/approle/role/services/secret-id")["data"]["secret_id"])
    secret_id.chmod(0o600)
    return role_id, secret_id


def test_service_secret_reaches_the_container_and_nothing_else(
    tmp_path: Path, bao: BaoServer, engine: docker.DockerClient, installation: str, network: str
) -> None:
    value = "db-pass-" + secrets.token_urlsafe(24)
    rotated = "db-pass-v2-" + secrets.token_urlsafe(24)
    kv = bao.client().secrets.kv.v2
    kv.create_or_update_secret(
        path=f"services/{SERVICE}/db", secret={"password": value}, mount_point="secret"
    )
    kv.create_or_update_secret(
        path=f"services/{SERVICE}/denied", secret={"password": "x"}, mount_point="secret"
    )
    role_id, secret_id = _approle(bao, tmp_path)
    config = tmp_path / "wakedock.yaml"
    config.write_text(
        f"secrets:\n  provider: vault\n  vault_url: {bao.url}\n  vault_auth: approle\n"
        f"  vault_role_id: {role_id}\n  vault_secret_id_file: {secret_id}\n"
        f"docker:\n  installation: {installation}\n"
    )
    env = {"WAKEDOCK_CONFIG": str(config)}
    data = tmp_path / "data"
    password = strong_password()
    made = run_cli(data, "user", "create", "dev", "--role", "developer", "--password-stdin",
                   stdin=password + "\n", env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    replies: list[str] = []
    with (
        # The most talkative log level: a value logged anywhere would show up.
        wakedock_server(data, env=env, extra_args=("--log-level", "debug")) as server,
        httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=60) as client,
    ):
        login = client.post("/api/v1/auth/login", json={"username": "dev", "password": password})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        spec = {
            "name": SERVICE,
            "image": TEST_IMAGE,
            "command": ["/bin/sh", "-c", "exec sleep 600"],
            "network_mode": network,
            "readiness": {"type": "healthcheck", "test": ["CMD", "true"]},
            "env": {"DB_PASSWORD": f"secret:services/{SERVICE}/db#password", "MODE": "prod"},
        }
        # OpenBao's policy denies this path to WakeDock: refused at save, nothing created.
        denied = client.post(
            "/api/v1/services",
            json={**spec, "env": {"X": f"secret:services/{SERVICE}/denied#password"}},
            headers=auth,
        )
        assert denied.status_code == 403 and "not allowed to read" in denied.json()["detail"], (
            denied.text
        )

        created = client.post("/api/v1/services", json=spec, headers=auth)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        started = client.post(f"/api/v1/services/{sid}/start", headers=auth)
        assert started.status_code == 200, started.text
        container = engine.containers.get(f"{installation}-{SERVICE}")
        assert f"DB_PASSWORD={value}" in container.attrs["Config"]["Env"]
        assert container.status == "running"

        # A new KV version is read at the next start.
        kv.create_or_update_secret(
            path=f"services/{SERVICE}/db", secret={"password": rotated}, mount_point="secret"
        )
        client.post(f"/api/v1/services/{sid}/stop", headers=auth).raise_for_status()
        client.post(f"/api/v1/services/{sid}/start", headers=auth).raise_for_status()
        container = engine.containers.get(f"{installation}-{SERVICE}")
        assert f"DB_PASSWORD={rotated}" in container.attrs["Config"]["Env"]
        assert f"DB_PASSWORD={value}" not in container.attrs["Config"]["Env"]

        replies = [denied.text, created.text, started.text]
        for path in ("", f"/{sid}", f"/{sid}/status"):
            replies.append(client.get(f"/api/v1/services{path}", headers=auth).text)
        log = server.log()
    exported = run_cli(data, "audit", "export", "--format", "jsonl", env=env)
    assert exported.returncode == 0, exported.stderr
    assert '"secret_access"' in exported.stdout and "container start" in exported.stdout
    inspected = run_cli(data, "service", "inspect", SERVICE, env=env)
    assert f"secret:services/{SERVICE}/db#password" in inspected.stdout
    database = b"".join(p.read_bytes() for p in data.glob("wakedock.db*"))
    for secret in (value, rotated):
        assert secret not in log
        assert secret not in exported.stdout and secret not in inspected.stdout
        assert secret.encode() not in database
        assert all(secret not in reply for reply in replies)
