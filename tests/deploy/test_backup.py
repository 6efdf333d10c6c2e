"""`wakedock backup create|restore` (issue #17, docs/deploy.md "Backup and restore"): a backup
taken while a real `wakedock serve` runs restores into a NEW data directory and database
(SQLite and the real PostgreSQL), where the same user signs in, the service is there and
`wakedock audit verify` passes at the manifest's head; a damaged, incomplete or forged backup
is refused or reported, and the file is readable by its owner only."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from conftest import strong_password
from support.components import PostgresServer
from support.engine import busybox_spec, engine, network  # noqa: F401 (fixtures)
from support.login import access_token, bearer, login
from support.server import run_cli, server_env, wakedock_command, wakedock_server
from wakedock.backup.archive import read_manifest
from wakedock.cli import main
from wakedock.db import make_engine

Members = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(params=["sqlite", "postgresql"])
def two_stacks(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """The environment of the original installation and of the new one it is restored into."""
    if request.param == "sqlite":
        yield {}, {}
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    names = [server.create_database(), server.create_database()]
    yield tuple({"WAKEDOCK_DATABASE__URL": server.admin_url(n)} for n in names)  # type: ignore[misc]
    for name in names:
        server.drop_database(name)


@pytest.fixture
def ledger(engine: docker.DockerClient) -> Iterator[str]:  # noqa: F811
    """The service's name; its container (stopped, so the network fixture does not see it) is
    removed after the test whatever happened."""
    yield "wd-backup-ledger"
    with contextlib.suppress(docker.errors.NotFound):
        engine.containers.get("wakedock-wd-backup-ledger").remove(force=True)


def create_user(data: Path, env: dict[str, str], name: str) -> str:
    password = strong_password()
    created = run_cli(
        data, "user", "create", name, "--role", "developer", "--password-stdin",
        stdin=password + "\n", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return password


def restored_head(data: Path, env: dict[str, str]) -> tuple[int, str]:
    url = env.get("WAKEDOCK_DATABASE__URL", f"sqlite:///{data / 'wakedock.db'}")
    db_engine = make_engine(url)
    try:
        with db_engine.connect() as conn:
            row = conn.execute(sa.text("SELECT seq, hash FROM audit_chain_head")).one()
    finally:
        db_engine.dispose()
    return int(row[0]), str(row[1])


def test_a_backup_of_a_running_server_restores_into_a_new_stack(
    two_stacks: tuple[dict[str, str], dict[str, str]],
    tmp_path: Path,
    network: str,  # noqa: F811 (fixture)
    ledger: str,
) -> None:
    old_env, new_env = two_stacks
    old, new, backup = tmp_path / "old", tmp_path / "new", tmp_path / "wakedock.backup"
    password = create_user(old, old_env, "olga")
    with (
        wakedock_server(old, env=old_env) as server,
        httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as client,
    ):
        token = access_token(client, "olga", password)
        assert login(client, "olga", "not-her-password").status_code == 401
        body = busybox_spec(ledger, network)
        created = client.post("/api/v1/services", json=body, headers=bearer(token))
        assert created.status_code == 201, created.text
        taken = run_cli(old, "backup", "create", "--out", str(backup), env=old_env)
        assert taken.returncode == 0, taken.stderr
        # Written after the backup: must not be in the restored chain.
        assert login(client, "olga", "still-not-it").status_code == 401
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    manifest = read_manifest(backup)
    assert manifest.audit_seq >= 4  # the user, two sign-ins, the service: at least

    restored = run_cli(new, "backup", "restore", str(backup), env=new_env)
    assert restored.returncode == 0, restored.stderr
    assert f"head seq {manifest.audit_seq}" in restored.stdout
    assert "chain intact" in restored.stdout and "matches the backup" in restored.stdout
    assert restored_head(new, new_env) == (manifest.audit_seq, manifest.audit_hash)
    verified = run_cli(new, "audit", "verify", env=new_env)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stderr

    with (
        wakedock_server(new, env=new_env) as server,
        httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as client,
    ):
        token = access_token(client, "olga", password)
        services = _items(client.get("/api/v1/services", headers=bearer(token)).json())
        assert [s["name"] for s in services] == ["wd-backup-ledger"]
        gone = client.delete(f"/api/v1/services/{services[0]['id']}", headers=bearer(token))
        assert gone.status_code == 204, gone.text

    again = run_cli(new, "backup", "restore", str(backup), env=new_env)
    assert again.returncode == 1 and "already holds data" in again.stderr


def _items(reply: object) -> list[dict[str, object]]:
    if isinstance(reply, dict):
        return list(reply.get("items", reply.get("services", [])))
    return list(reply)  # type: ignore[arg-type]


# --- Damaged, incomplete and forged backups (SQLite; the checks do not depend on the engine) ---


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of an installation with a user and its audit event, taken with umask 0."""
    root = tmp_path_factory.mktemp("backup-original")
    create_user(root / "data", {}, "ivan")
    out = root / "wakedock.backup"
    subprocess.run(
        wakedock_command("backup", "create", "--out", str(out)),
        env=server_env(root / "data"), check=True, capture_output=True,
        preexec_fn=lambda: os.umask(0),
    )  # fmt: skip
    return out


def rewrite(source: Path, target: Path, change: Callable[[Members], Members]) -> Path:
    with tarfile.open(source, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(target, "w:gz") as tar:
        for info, data in change(members):
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


def manifest_of(members: Members) -> dict[str, object]:
    return dict(json.loads(members[0][1]))


def with_manifest(members: Members, manifest: dict[str, object]) -> Members:
    return [(members[0][0], json.dumps(manifest).encode()), *members[1:]]


def restore(backup: Path, data: Path) -> Result:
    """`wakedock backup restore` in this process: the same command, without a 4 s start."""
    return CliRunner().invoke(main, ["--data-dir", str(data), "backup", "restore", str(backup)])


@pytest.mark.security
def test_a_modified_member_fails_its_checksum_and_nothing_is_restored(
    original: Path, tmp_path: Path
) -> None:
    def flip(members: Members) -> Members:
        return [
            (i, d + b"x" if i.name == "data/secrets/audit_chain_key" else d) for i, d in members
        ]

    result = restore(rewrite(original, tmp_path / "b", flip), tmp_path / "data")
    assert result.exit_code == 1
    assert "checksum mismatch for data/secrets/audit_chain_key" in result.stderr
    assert not (tmp_path / "data" / "wakedock.db").exists()
    assert not (tmp_path / "data" / "secrets").exists()


@pytest.mark.security
def test_a_backup_without_the_chain_key_is_refused(original: Path, tmp_path: Path) -> None:
    def drop_key(members: Members) -> Members:
        manifest = manifest_of(members)
        del manifest["members"]["data/secrets/audit_chain_key"]  # type: ignore[attr-defined]
        kept = [(i, d) for i, d in members if i.name != "data/secrets/audit_chain_key"]
        return with_manifest(kept, manifest)

    result = restore(rewrite(original, tmp_path / "b", drop_key), tmp_path / "data")
    assert result.exit_code == 1
    assert "audit.chain_key is not in this backup" in result.stderr
    assert "Restore refused" in result.stderr
    assert not (tmp_path / "data" / "wakedock.db").exists()


@pytest.mark.security
def test_a_member_outside_the_manifest_is_never_written(original: Path, tmp_path: Path) -> None:
    def smuggle(members: Members) -> Members:
        return [*members, (tarfile.TarInfo("../../escaped"), b"owned")]

    result = restore(rewrite(original, tmp_path / "b", smuggle), tmp_path / "d" / "data")
    assert result.exit_code == 1 and "not in its manifest" in result.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "d" / "escaped").exists()


@pytest.mark.security
def test_a_forged_audit_event_with_matching_checksums_fails_the_chain(
    original: Path, tmp_path: Path
) -> None:
    """Checksums catch damage; a forger who rewrites them is caught by the keyed chain."""

    def forge(members: Members) -> Members:
        db_path = tmp_path / "forged.db"
        db_path.write_bytes(members[1][1])
        with sqlite3.connect(db_path) as db:
            db.execute("UPDATE audit_events SET target = 'mallory' WHERE seq = 1")
        data = db_path.read_bytes()
        manifest = manifest_of(members)
        manifest["members"]["database/wakedock.db"]["sha256"] = hashlib.sha256(data).hexdigest()  # type: ignore[index]
        return with_manifest([members[0], (members[1][0], data), *members[2:]], manifest)

    result = restore(rewrite(original, tmp_path / "b", forge), tmp_path / "data")
    assert result.exit_code == 1
    assert "TAMPERED" in result.stderr and "was changed" in result.stderr


@pytest.mark.security
def test_the_backup_file_is_owner_only_whatever_the_umask(original: Path) -> None:
    assert stat.S_IMODE(original.stat().st_mode) == 0o600
    again = run_cli(original.parent / "data", "backup", "create", "--out", str(original))
    assert again.returncode == 1 and "never overwritten" in again.stderr
