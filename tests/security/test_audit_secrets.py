"""No password, token, code or secret value used in a full flow ever reaches the audit table,
its exports or a SIEM sink (searched for verbatim)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import Harness, strong_password
from wakedock.rbac.permissions import Role
from wakedock.siem.exporter import SinkWorker, sink_key
from wakedock.siem.sinks import parse_sink

pytestmark = pytest.mark.security


def test_secrets_never_reach_the_trail_or_its_exports(harness: Harness, tmp_path: Path) -> None:
    h = harness
    used: list[str] = []
    name, password = h.create_user("sam", Role.ADMIN)
    used.append(password)
    first = h.login(name, password)  # enrols MFA: secret and backup codes
    used += [first["access_token"], first["refresh_token"], h.mfa_secrets[name]]
    used += h.backup_codes[name]
    auth = h.bearer(first["access_token"])
    code = h.totp_code(name)
    used.append(code)
    h.client.post("/api/v1/auth/mfa/step-up", json={"code": code}, headers=auth)
    refreshed = h.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    used.append(refreshed.json()["refresh_token"])
    h.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})  # reuse
    wrong = "wrong-" + strong_password()
    h.client.post("/api/v1/auth/login", json={"username": name, "password": wrong})
    used.append(wrong)
    new_password = strong_password()
    h.client.post(
        "/api/v1/auth/password",
        json={"current_password": password, "new_password": new_password},
        headers=h.bearer(refreshed.json()["access_token"]),
    )
    used.append(new_password)
    token, _ = h.components.setup.issue()
    h.client.post("/api/v1/auth/setup", json={"token": token, "username": "x", "password": "p"})
    used.append(token)

    with h.components.engine.connect() as conn:
        table = "\n".join(str(row) for row in conn.execute(sa.text("SELECT * FROM audit_events")))
    reader = h.bearer(h.token_for(Role.OPERATOR))
    exports = [
        h.client.get("/api/v1/audit/export", params={"format": f}, headers=reader).text
        for f in ("jsonl", "csv")
    ]
    sink_file = tmp_path / "siem.jsonl"
    url = f"file://{sink_file}"
    worker = SinkWorker(sink_key(url), parse_sink(url), h.components.db, h.components.clock,
                        batch_size=10_000, poll_seconds=1, max_backoff=1)  # fmt: skip
    worker._ensure_cursor()
    worker.deliver_once()
    everything = "\n".join([table, *exports, sink_file.read_text()])
    assert "token_reuse" in everything and "login_failure" in everything
    for secret in used:
        assert secret not in everything, f"a secret value ({secret[:4]}...) reached the trail"
