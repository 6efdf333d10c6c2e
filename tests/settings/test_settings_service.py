"""The settings service on its own: a database for the audit trail, and the settings."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from support.database import audit_database
from wakedock.audit.models import AuditEvent
from wakedock.clock import FakeClock
from wakedock.config import load_settings
from wakedock.context import RequestContext
from wakedock.settings.service import EffectiveSettings

CHAIN_KEY = "zqsecret-chain-" + "c" * 40


def test_each_read_is_audited_and_shows_where_a_secret_comes_from(tmp_path: Path) -> None:
    settings = load_settings(
        None, {"data_dir": tmp_path / "data", "audit": {"chain_key": CHAIN_KEY}}
    )
    sources = {"auth.jwt_signing_key": "file:/run/secrets/wakedock/jwt"}
    with audit_database(f"sqlite:///{tmp_path / 'wakedock.db'}") as factory:
        reader = EffectiveSettings(settings, sources, factory, FakeClock())
        shown = reader.read(RequestContext(actor="olga", ip="198.51.100.7"))
        assert "zqsecret" not in json.dumps(shown)
        assert shown["audit"]["chain_key"] == {"secret": True, "set": True, "source": "yaml"}
        assert shown["auth"]["jwt_signing_key"]["from"] == "file:/run/secrets/wakedock/jwt"
        with factory() as db:
            (row,) = db.scalars(select(AuditEvent)).all()
    assert (row.type, row.target, row.actor, row.ip) == (
        "data_access", "configuration", "olga", "198.51.100.7",
    )  # fmt: skip
    assert json.loads(row.details) == {"what": "settings"}
