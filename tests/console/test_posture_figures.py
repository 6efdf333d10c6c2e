"""The posture figures' SQL (console/posture.py) on SQLite and on a real PostgreSQL: each
database buckets hours in its own SQL, so both must count real events the same way."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import Harness
from support.components import PostgresServer
from support.pages import events
from wakedock.audit.events import Event, EventType
from wakedock.clock import FakeClock
from wakedock.console.posture import (
    delivered_alerts,
    median_seconds,
    mfa_adoption,
    sign_in_series,
)
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both databases (the console's other tests run on SQLite alone)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wakedock.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    yield server.admin_url(name)
    server.drop_database(name)


@pytest.fixture
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


def test_failed_sign_ins_rate_limit_hits_and_locked_out_accounts_per_hour(h: Harness) -> None:
    h.create_user("target", Role.VIEWER)
    # Wrong passwords until the per-account budget (5 per 15 minutes) refuses the rest.
    for _ in range(7):
        h.client.post("/api/v1/auth/login", json={"username": "target", "password": "x" * 16})
    failures, hits = events(h, "login_failure"), events(h, "rate_limit_hit")
    assert failures and hits
    with h.components.db() as db:
        series = sign_in_series(db, h.components.clock.now())
    assert len(series.hours) == 24
    assert series.hours[-1] == h.components.clock.now().strftime("%Y-%m-%d %H")
    assert sum(series.failed) == len(failures)
    assert sum(series.limited) == len(hits)
    # One account refused: one locked-out account in its hour.
    assert max(series.locked_out) == 1


def test_alert_receipts_give_each_delay_and_the_median(
    make_harness: Callable[..., Harness],
) -> None:
    # A clock that stands still: each receipt is written at `now` exactly.
    h = make_harness(clock=FakeClock())
    now = h.components.clock.now()
    for delay, summary in ((2.0, False), (4.0, False), (600.0, True)):
        receipt = Event(
            EventType.ALERT_DELIVERED,
            target="brute_force",
            details={
                "rule": "brute_force",
                "severity": "high",
                "title": "Brute force from 192.0.2.1",
                "raised_at": (now - timedelta(seconds=delay)).isoformat(),
                "summary": summary,
            },
        )
        h.components.auditor.record(receipt, RequestContext(actor="system:alerts"))
    with h.components.db() as db:
        alerts = delivered_alerts(db, h.components.clock.now())
    assert [a.summary for a in alerts] == [True, False, False]  # newest first
    assert alerts[0].seconds is None  # a summary has no MTTD
    assert [a.seconds for a in alerts[1:]] == [4.0, 2.0]
    assert median_seconds(alerts) == 3.0
    assert json.loads(events(h, "alert_delivered")[0].details)["rule"] == "brute_force"


def test_mfa_adoption_by_role_and_for_all_but_admins(h: Harness) -> None:
    h.create_user("v1", Role.VIEWER)
    h.create_user("o1", Role.OPERATOR)
    with h.components.db() as db:
        rows = {row.group: row for row in mfa_adoption(db)}
    assert (rows["viewer"].users, rows["viewer"].enrolled, rows["viewer"].met) == (1, 0, False)
    assert rows["admin"].met is None  # no admin account yet
    assert rows["all users but admins"].users == 2
