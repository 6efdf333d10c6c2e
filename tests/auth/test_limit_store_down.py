"""Logins refused because the rate-limit store (a real Redis, stopped) is down fail closed and
are still audited: the audit trail lives in the database, not in Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from conftest import Harness
from support.components import RedisServer, start_redis
from wakedock.audit.models import AuditEvent
from wakedock.db import transaction
from wakedock.rbac.permissions import Role

pytestmark = [pytest.mark.integration, pytest.mark.security]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    # Its own instance: the session's shared Redis must survive this test.
    server = start_redis()
    yield server
    if server.process.poll() is None:
        server.stop()


def refused(h: Harness, type_: str) -> list[tuple[str | None, str, dict[str, str]]]:
    with transaction(h.components.db) as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.type == type_)).all()
        found = [(e.actor, e.outcome, json.loads(e.details)) for e in rows]
    return [row for row in found if row[2].get("reason") == "rate-limit store unavailable"]


def test_password_and_mfa_steps_refused_with_the_store_down_are_audited(
    make_harness: Callable[..., Harness], own_redis: RedisServer
) -> None:
    h = make_harness(rate_limit={"storage_url": own_redis.url})
    name, password = h.create_user("mallory", Role.ADMIN)
    h.login(name, password)  # enrols MFA: the next login asks for a code
    challenge = h.client.post(
        "/api/v1/auth/login", json={"username": name, "password": password}
    ).json()["challenge_token"]

    own_redis.stop()
    for username in (name, "nobody"):
        reply = h.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert reply.status_code == 503 and "access_token" not in reply.text
    verify = h.client.post(
        "/api/v1/auth/mfa/verify",
        json={"challenge_token": challenge, "code": h.totp_code(name)},
    )
    assert verify.status_code == 503 and "access_token" not in verify.text

    assert sorted(refused(h, "login_failure"), key=str) == [
        ("mallory", "denied", {"reason": "rate-limit store unavailable"}),
        ("nobody", "denied", {"reason": "rate-limit store unavailable"}),
    ]
    [(_actor, outcome, details)] = refused(h, "mfa_failure")
    assert outcome == "denied" and details["purpose"] == "login"
