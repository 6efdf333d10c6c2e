"""The production stack's OpenBao override (deploy/compose.openbao.yaml): OpenBao from a local
image (scripts/build-openbao-image.sh), initialised, unsealed and set up by
scripts/stack-openbao-init.sh as a self-hoster would (tests/deploy/conftest.py), and WakeDock
using it as its secrets provider, seen through the edge's one published port on 127.0.0.1.
Last of the stack's tests: the last one brings it down."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from support.stack import PROJECT_LABEL, STACK_SERVICES, Stack, init_openbao, wait_healthy

pytestmark = pytest.mark.integration


def _bao(
    stack: Stack, *args: str, token: str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`bao <args>` in the OpenBao container (the token in its environment, not on a command
    line)."""
    container = stack.containers()["openbao"]["Id"]
    with_token = ["-e", "BAO_TOKEN"] if token else []
    return subprocess.run(
        ["docker", "exec", "-i", *with_token, container, "bao", *args],
        input=stdin,
        env={**os.environ, "BAO_TOKEN": token or ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _init_file(stack: Stack) -> Path:
    assert stack.openbao_keys is not None
    return stack.openbao_keys / "openbao-init.json"


def _root_token(stack: Stack) -> str:
    return str(json.loads(_init_file(stack).read_text())["root_token"])


def _kv_get(stack: Stack, path: str, token: str) -> subprocess.CompletedProcess[str]:
    return _bao(stack, "kv", "get", "-format=json", f"secret/{path}", token=token)


def test_openbao_is_unsealed_on_the_internal_data_network_and_not_published(
    stack: Stack,
) -> None:
    containers = stack.containers()
    assert set(containers) == STACK_SERVICES
    openbao = containers["openbao"]
    assert not openbao["HostConfig"]["PortBindings"]
    assert not any(openbao["NetworkSettings"]["Ports"].values())
    [network] = openbao["NetworkSettings"]["Networks"]
    assert network == f"{stack.project}_data"
    assert stack.engine.api.inspect_network(network)["Internal"] is True
    published = {
        name: [b for bound in (a["HostConfig"]["PortBindings"] or {}).values() for b in bound or []]
        for name, a in containers.items()
    }
    assert {name for name, bindings in published.items() if bindings} == {"edge"}
    status = json.loads(_bao(stack, "status", "-format=json").stdout)
    assert (status["initialized"], status["sealed"]) == (True, False)
    assert status["storage_type"] == "raft"


def test_openbao_runs_as_a_non_root_user_on_a_read_only_root(stack: Stack) -> None:
    openbao = stack.containers()["openbao"]
    host = openbao["HostConfig"]
    assert openbao["Config"]["User"] == "100:1000"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert "noexec" in host["Tmpfs"]["/tmp"]
    assert openbao["Config"]["Healthcheck"]["Test"] == ["CMD", "bao", "status"]
    # What the server process really runs as, seen by the engine.
    top = stack.engine.api.top(openbao["Id"], ps_args="-o pid,uid,gid,args")
    server = [p for p in top["Processes"] if "server" in p[-1]]
    assert server and all(p[1:3] == ["100", "1000"] for p in server), top
    written = subprocess.run(
        ["docker", "exec", openbao["Id"], "sh", "-c", "echo x > /etc/openbao/x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert written.returncode != 0 and "Read-only file system" in written.stderr


def test_the_unseal_keys_and_root_token_stay_on_the_host(stack: Stack) -> None:
    init_file = _init_file(stack)
    assert init_file.stat().st_mode & 0o777 == 0o600
    assert init_file.parent.stat().st_mode & 0o777 == 0o700
    keys = json.loads(init_file.read_text())
    assert len(keys["unseal_keys_b64"]) == 5
    token = keys["root_token"]
    for name, attrs in stack.containers().items():
        mounted = [m["Source"] for m in attrs["Mounts"]]
        assert not any(str(init_file.parent) in source for source in mounted), (name, mounted)
        assert token not in json.dumps(attrs), name
    secret_id = stack.secrets_dir / "openbao_secret_id"
    assert (secret_id.stat().st_uid, secret_id.stat().st_mode & 0o777) == (10001, 0o400)


def test_wakedock_reports_openbao_as_its_secrets_backend(
    stack: Stack, admin: dict[str, str]
) -> None:
    with stack.client() as client:
        health = client.get("/api/v1/health")
        settings = client.get("/api/v1/settings", headers=admin)
    assert health.status_code == 200, health.text
    assert health.json()["components"]["secrets"] == "ok", health.json()
    assert settings.status_code == 200, settings.text
    configured = settings.json()["secrets"]
    assert configured["provider"] == "vault"
    assert configured["vault_url"] == "https://openbao:8200"
    assert configured["vault_auth"] == "approle"


def test_a_secret_written_through_the_edge_lands_in_openbao_and_is_read_back(
    stack: Stack, admin: dict[str, str]
) -> None:
    name = f"wd-bao-svc-{secrets.token_hex(3)}"
    # The API's paths are below secrets.service_prefix, `services/` in OpenBao.
    path = f"{name}/db"
    value = f"written-through-the-edge-{secrets.token_hex(8)}"
    with stack.client() as client:
        written = client.put(f"/api/v1/secrets/{path}", json={"values": {"password": value}},
                             headers=admin)  # fmt: skip
        assert written.status_code == 200, written.text
        assert written.json() == {"path": path, "version": 1}
        # In OpenBao itself, read with the root token.
        stored = _kv_get(stack, f"services/{path}", _root_token(stack))
        assert stored.returncode == 0, stored.stderr
        data = json.loads(stored.stdout)["data"]
        assert data["data"] == {"password": value}
        assert data["metadata"]["version"] == 1
        # A version written in OpenBao, read back by WakeDock through the edge.
        put = _bao(
            stack, "kv", "put", f"secret/services/{path}", "password=-", stdin="rotated-in-openbao",
            token=_root_token(stack),
        )  # fmt: skip
        assert put.returncode == 0, put.stderr
        described = client.get(f"/api/v1/secrets/{path}", headers=admin)
        listed = client.get("/api/v1/secrets", headers=admin)
    assert described.status_code == 200, described.text
    body = described.json()
    assert (body["keys"], body["version"]) == (["password"], 2)
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert "values" not in body or body["values"] is None
    assert listed.status_code == 200, listed.text
    assert f"{name}/" in listed.json()["children"]


@pytest.mark.security
def test_wakedock_role_reads_nothing_outside_its_paths(stack: Stack) -> None:
    root = _root_token(stack)
    put = _bao(stack, "kv", "put", "secret/ops/root-only", "key=-", stdin="x", token=root)
    assert put.returncode == 0, put.stderr
    secret_id = (stack.secrets_dir / "openbao_secret_id").read_text()
    login = _bao(
        stack, "write", "-field=token", "auth/approle/login", "role_id=wakedock", "secret_id=-",
        stdin=secret_id,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    token = login.stdout.strip()
    refused = _kv_get(stack, "ops/root-only", token)
    assert refused.returncode != 0
    assert "permission denied" in refused.stderr
    own = _bao(stack, "kv", "put", "secret/services/wd-bao-own/x", "k=-", stdin="v", token=token)
    assert own.returncode == 0, own.stderr
    mounts = _bao(stack, "secrets", "list", token=token)
    assert mounts.returncode != 0 and "permission denied" in mounts.stderr
    looked_up = json.loads(_bao(stack, "token", "lookup", "-format=json", token=token).stdout)
    assert sorted(looked_up["data"]["policies"]) == ["default", "wakedock"]


def _read_secrets(stack: Stack, admin: dict[str, str]) -> int:
    with stack.client() as client:
        return client.get("/api/v1/secrets", headers=admin).status_code


def _status_once_listening(stack: Stack, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`bao status` once the restarted server listens: exit 1 is an error (connection refused
    while it starts), 0 unsealed, 2 sealed."""
    deadline = time.monotonic() + timeout
    status = _bao(stack, "status")
    while status.returncode == 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _bao(stack, "status")
    return status


def test_a_restarted_openbao_is_sealed_until_the_script_unseals_it(
    stack: Stack, admin: dict[str, str]
) -> None:
    assert _read_secrets(stack, admin) == 200
    stack.engine.api.restart(stack.containers()["openbao"]["Id"], timeout=10)
    sealed = _status_once_listening(stack)
    assert sealed.returncode == 2, sealed.stdout + sealed.stderr
    assert _read_secrets(stack, admin) == 503
    # Run again, the script only unseals: same keys, same secret id.
    secret_id = (stack.secrets_dir / "openbao_secret_id").read_text()
    output = init_openbao(stack)
    assert "unsealed OpenBao" in output and "initialised" not in output
    assert (stack.secrets_dir / "openbao_secret_id").read_text() == secret_id
    deadline = time.monotonic() + 30
    while _read_secrets(stack, admin) != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert _read_secrets(stack, admin) == 200
    wait_healthy(stack, len(STACK_SERVICES), timeout=60)


def test_down_removes_every_container_network_and_volume(stack: Stack) -> None:
    stack.compose("down", "-v", "--remove-orphans", timeout=120)
    label = {"label": f"{PROJECT_LABEL}={stack.project}"}
    assert stack.engine.api.containers(all=True, filters=label) == []
    assert stack.engine.api.networks(filters=label) == []
    assert stack.engine.api.volumes(filters=label)["Volumes"] in (None, [])
