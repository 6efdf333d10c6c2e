"""GET /api/v1/settings: the effective configuration, read-only, never a secret value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import Harness
from support.secret_sources import secrets_from_files
from wakedock.audit.models import AuditEvent
from wakedock.config import load_settings
from wakedock.db import transaction
from wakedock.rbac.permissions import Permission, Role
from wakedock.rbac.roles import has_permission
from wakedock.settings.service import effective_settings

# Distinctive secret values: none of them may appear anywhere in an answer.
JWT_KEY = "zqsecret-jwt-" + "j" * 40
MFA_KEY = "zqsecret-mfa-" + "m" * 40
CHAIN_KEY = "zqsecret-chain-" + "c" * 40
VAULT_TOKEN = "zqsecret-vault-token"
SINK = "https://127.0.0.1:9/zqsecret-sink?token=zqsecret-sink-token"
HOOK = "https://127.0.0.1:9/hooks/zqsecret-hook"


@pytest.fixture
def h(
    make_harness: Callable[..., Harness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    # One secret from each kind of source: a *_FILE variable, a secret: reference read from
    # the secrets directory, plain values given to the loader, and list items (URLs).
    secrets_dir = secrets_from_files(tmp_path, monkeypatch, mfa_key=MFA_KEY, jwt_key=JWT_KEY)
    return make_harness(
        auth={"jwt_signing_key": "secret:wakedock#jwt"},
        audit={"chain_key": CHAIN_KEY},
        secrets={"provider": "file", "directory": secrets_dir, "vault_token": VAULT_TOKEN},
        siem={"sinks": [SINK]},
        alerts={"webhooks": [HOOK], "allowed_networks": ["127.0.0.0/8"]},
        http={"trusted_proxies": ["10.0.0.0/8"]},
    )


def _read(h: Harness, role: Role) -> Any:
    return h.client.get("/api/v1/settings", headers=h.bearer(h.token_for(role)))


def test_an_operator_reads_the_settings_without_any_secret(h: Harness) -> None:
    reply = _read(h, Role.OPERATOR)
    assert reply.status_code == 200, reply.text
    assert "zqsecret" not in reply.text
    body = reply.json()
    # Plain settings as they are in force.
    assert body["environment"] == "production"
    assert body["http"]["trusted_proxies"] == ["10.0.0.0/8"]
    assert body["auth"]["password_min_length"] == 12
    # Each secret only as where it comes from.
    assert body["auth"]["jwt_signing_key"]["source"] == "reference"
    assert body["auth"]["jwt_signing_key"]["from"].startswith("file:")
    assert body["mfa"]["encryption_key"] == {
        "secret": True,
        "set": True,
        "source": "file (WAKEDOCK_MFA__ENCRYPTION_KEY_FILE)",
    }
    assert body["audit"]["chain_key"] == {"secret": True, "set": True, "source": "yaml"}
    assert body["secrets"]["vault_token"]["source"] == "yaml"
    assert body["rate_limit"]["storage_url"]["source"] == "default"
    assert body["siem"]["sinks"] == [
        {"secret": True, "set": True, "scheme": "https", "source": "yaml"}
    ]
    assert body["alerts"]["webhooks"][0]["scheme"] == "https"
    # Nothing masked-but-present either: no "**********" left for a secret.
    assert "*****" not in reply.text


def test_unset_secrets_say_so(tmp_path: Path) -> None:
    # The service alone: what an unset secret looks like needs no app, user or database.
    body = effective_settings(load_settings(None, {"data_dir": tmp_path / "data"}), {})
    assert body["auth"]["jwt_signing_key"] == {"secret": True, "set": True, "source": "generated"}
    assert body["secrets"]["vault_token"] == {"secret": True, "set": False, "source": "not set"}
    assert body["siem"]["sinks"] == []


@pytest.mark.parametrize("role", list(Role))
def test_only_roles_with_settings_read_get_them(h: Harness, role: Role) -> None:
    reply = _read(h, role)
    if has_permission(role, Permission.SETTINGS_READ):
        assert reply.status_code == 200, reply.text
    else:
        assert reply.status_code == 403
        assert reply.json()["code"] == "permission_denied"
        assert "zqsecret" not in reply.text
    assert {r for r in Role if has_permission(r, Permission.SETTINGS_READ)} == {
        Role.ADMIN,
        Role.OPERATOR,
    }


def test_a_read_is_audited(h: Harness) -> None:
    assert _read(h, Role.OPERATOR).status_code == 200
    with transaction(h.components.db) as db:
        rows = db.scalars(
            select(AuditEvent).where(
                AuditEvent.type == "data_access", AuditEvent.target == "configuration"
            )
        ).all()
        assert [(r.outcome, json.loads(r.details)) for r in rows] == [
            ("success", {"what": "settings"})
        ]
        assert rows[0].actor.startswith("operator")


def test_anonymous_callers_are_refused(h: Harness) -> None:
    assert h.client.get("/api/v1/settings").status_code == 401
