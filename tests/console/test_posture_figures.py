"""The posture figures' SQL (console/posture.py) on SQLite and on a real PostgreSQL: each
database buckets hours in its own SQL, so both must count real events the same way."""

from __future__ import annotations

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
    AlertState,
    alert_state,
    median_seconds,
    mfa_adoption,
    raised_alerts,
    sign_in_series,
)
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.siem.exporter import SinkStatus
from wakedock.siem.sinks import safe_error


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


def test_alerts_raised_with_their_delivery_state_each_delay_and_the_median(
    make_harness: Callable[..., Harness],
) -> None:
    # A clock that stands still: each record is written at `now` exactly.
    h = make_harness(clock=FakeClock())
    now = h.components.clock.now()

    def record(kind: EventType, rule: str, delay: float, event: str, summary: bool = False) -> None:
        details = {
            "rule": rule,
            "severity": "high",
            "title": f"{rule} alert",
            "raised_at": (now - timedelta(seconds=delay)).isoformat().replace("+00:00", "Z"),
            "event_ids": [event],
            "summary": summary,
        }
        event_ = Event(kind, target=rule, details=details)
        h.components.auditor.record(event_, RequestContext(actor="system:alerts"))

    raised, delivered = EventType.ALERT_RAISED, EventType.ALERT_DELIVERED
    record(raised, "brute_force", 4.0, "wakedock-1")
    record(delivered, "brute_force", 4.0, "wakedock-1")
    # Raised again after a restart (its batch was not acknowledged), delivered once: one alert.
    record(raised, "severity:token_reuse", 2.0, "wakedock-2")
    record(raised, "severity:token_reuse", 2.0, "wakedock-2")
    record(delivered, "severity:token_reuse", 2.0, "wakedock-2")
    # Raised, never delivered: the webhook refuses it.
    record(raised, "privilege:admin", 30.0, "wakedock-3")
    # A receipt written before raises were audited, a flood's summary's.
    record(delivered, "waf_blocked", 600.0, "wakedock-4", summary=True)
    with h.components.db() as db:
        alerts = raised_alerts(db, h.components.clock.now())
    assert [a.rule for a in alerts] == [  # newest raised first
        "severity:token_reuse", "brute_force", "privilege:admin", "waf_blocked"
    ]  # fmt: skip
    assert [a.seconds for a in alerts] == [2.0, 4.0, None, None]  # a summary has no MTTD
    assert [a.waiting(now) for a in alerts] == [None, None, 30.0, None]
    assert median_seconds(alerts) == 3.0  # delivered alerts only
    failing = SinkStatus("alerts", 0, 3, None, failures=2, last_error="HTTP 503")
    quiet = SinkStatus("alerts", 0, 3, None, failures=0, last_error=None)
    assert [alert_state(a, failing) for a in alerts] == [
        AlertState.DELIVERED, AlertState.DELIVERED, AlertState.FAILING, AlertState.DELIVERED
    ]  # fmt: skip
    assert alert_state(alerts[2], quiet) is AlertState.PENDING
    assert alert_state(alerts[2], None) is AlertState.PENDING


def test_a_delivery_error_is_shown_without_any_url_path_query_or_credentials() -> None:
    error = (
        "alert webhook hooks.example.com: POST https://bot:pass@hooks.example.com/services/"
        "T0/B0/Xs3cret?token=abc failed; retry http://[::1]:8080/p?q=1"
    )
    assert safe_error(error) == (
        "alert webhook hooks.example.com: POST https://hooks.example.com failed; "
        "retry http://[::1]:8080"
    )
    assert safe_error(None) is None


def test_mfa_adoption_by_role_and_for_all_but_admins(h: Harness) -> None:
    h.create_user("v1", Role.VIEWER)
    h.create_user("o1", Role.OPERATOR)
    with h.components.db() as db:
        rows = {row.group: row for row in mfa_adoption(db)}
    assert (rows["viewer"].users, rows["viewer"].enrolled, rows["viewer"].met) == (1, 0, False)
    assert rows["admin"].met is None  # no admin account yet
    assert rows["all users but admins"].users == 2
