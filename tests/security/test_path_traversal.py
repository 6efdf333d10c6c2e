"""/api/v1/files: no path outside the service files root, however it is spelled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import Harness
from wakedock.audit.models import AuditEvent
from wakedock.files.store import FileStore, PathRefused
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.security

SEED_PAYLOADS = [
    "../../../etc/passwd",
    "..\\..\\..\\windows\\system32\\config\\sam",
    "....//....//....//etc//passwd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
]
ENCODED_PAYLOADS = [
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "..%5c..%5c..%5cetc%5cpasswd",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "web/%00/passwd",
    "web%00.html",
    "web//index.html",
]


def _traversal_events(harness: Harness) -> list[AuditEvent]:
    with harness.components.db() as db:
        query = select(AuditEvent).where(AuditEvent.type == "path_traversal")
        return list(db.execute(query).scalars())


@pytest.mark.parametrize("payload", SEED_PAYLOADS + ENCODED_PAYLOADS)
def test_traversal_payloads_never_escape(harness: Harness, payload: str) -> None:
    token = harness.token_for(Role.ADMIN)
    for method in ("GET", "PUT"):
        response = harness.client.request(
            method, f"/api/v1/files/{payload}", headers=harness.bearer(token), content=b"owned"
        )
        assert response.status_code in (400, 403, 404), (method, payload, response.status_code)
        assert "root:" not in response.text
    # Nothing was written anywhere near the data directory's parent.
    data_dir = harness.components.settings.data_dir
    assert not (data_dir.parent / "etc").exists()
    assert not any(p.name == "passwd" for p in data_dir.rglob("*"))


def test_refusals_that_reach_wakedock_are_audited(harness: Harness) -> None:
    token = harness.token_for(Role.ADMIN)
    response = harness.client.get(
        "/api/v1/files/..%2f..%2fetc%2fpasswd", headers=harness.bearer(token)
    )
    assert response.status_code == 400
    assert response.json()["code"] == "path_refused"
    events = _traversal_events(harness)
    assert [(e.severity, e.outcome, e.target) for e in events] == [
        ("high", "denied", "../../etc/passwd")
    ]


def test_symlinks_are_refused_even_inside_the_root(harness: Harness) -> None:
    token = harness.token_for(Role.ADMIN)
    root = harness.components.settings.data_dir / "files"
    root.mkdir(parents=True, exist_ok=True)
    (root / "real.txt").write_text("inside")
    os.symlink("/etc", root / "etc-link")
    os.symlink(root / "real.txt", root / "inner-link")
    for path in ("etc-link/passwd", "inner-link"):
        response = harness.client.get(f"/api/v1/files/{path}", headers=harness.bearer(token))
        assert response.status_code == 400, path
        assert "root:" not in response.text
    written = harness.client.put(
        "/api/v1/files/etc-link/evil", headers=harness.bearer(token), content=b"x"
    )
    assert written.status_code == 400
    assert not Path("/etc/evil").exists()


def test_write_then_read_roundtrip_and_limits(harness: Harness) -> None:
    token = harness.token_for(Role.OPERATOR)
    page = b"<!doctype html><title>Waking up</title>"
    put = harness.client.put(
        "/api/v1/files/demo/loading.html", headers=harness.bearer(token), content=page
    )
    assert put.status_code == 200
    assert put.json() == {"path": "demo/loading.html", "size": len(page)}
    got = harness.client.get("/api/v1/files/demo/loading.html", headers=harness.bearer(token))
    assert got.status_code == 200
    assert got.content == page
    # Served as a download, never rendered on WakeDock's origin.
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == "attachment"
    too_big = harness.client.put(
        "/api/v1/files/demo/big.bin",
        headers=harness.bearer(token),
        content=b"x" * (1024 * 1024 + 1),
    )
    assert too_big.status_code == 413
    missing = harness.client.get("/api/v1/files/demo/none.txt", headers=harness.bearer(token))
    assert missing.status_code == 404
    with harness.components.db() as db:
        writes = db.execute(select(AuditEvent).where(AuditEvent.type == "file_write")).scalars()
        assert [e.target for e in writes] == ["demo/loading.html"]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_roles_without_file_permissions_are_refused(harness: Harness, role: Role) -> None:
    token = harness.token_for(role)
    assert (
        harness.client.get("/api/v1/files/x.txt", headers=harness.bearer(token)).status_code == 403
    )
    assert (
        harness.client.put(
            "/api/v1/files/x.txt", headers=harness.bearer(token), content=b"x"
        ).status_code
        == 403
    )
    assert harness.client.get("/api/v1/files/x.txt").status_code == 401


@pytest.mark.parametrize(
    "raw",
    ["../etc/passwd", "a/../../b", "/abs", "a\\b", "a\x00b", "", ".", "a//b", "C:/x", "a/./b"],
)
def test_store_refuses_raw_paths(tmp_path: Path, raw: str) -> None:
    # Below HTTP: the paths a client library would have normalised away.
    store = FileStore(tmp_path / "files")
    with pytest.raises(PathRefused):
        store.resolve(raw)
    with pytest.raises(PathRefused):
        store.write(raw, b"x")
