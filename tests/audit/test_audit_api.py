"""GET /api/v1/audit and /api/v1/audit/export: permission, filters, cursor pages, exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from conftest import Harness
from wakedock.audit.events import Event, EventType
from wakedock.audit.models import SinkCursor
from wakedock.audit.service import record_alone
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role


@pytest.fixture
def h(harness: Harness) -> Harness:
    for n in range(25):
        harness.components.auditor.record(
            Event(EventType.LOGIN_FAILURE, target=f"user{n}"),
            RequestContext(ip=f"198.51.100.{n % 3}", actor=f"user{n}"),
        )
    return harness


def test_only_audit_readers_see_the_trail(h: Harness) -> None:
    for role in (Role.VIEWER, Role.DEVELOPER):
        reply = h.client.get("/api/v1/audit", headers=h.bearer(h.token_for(role)))
        assert reply.status_code == 403
    assert h.client.get("/api/v1/audit").status_code == 401
    reader = h.bearer(h.token_for(Role.OPERATOR))
    assert h.client.get("/api/v1/audit", headers=reader).status_code == 200


def test_cursor_pages_cover_every_event_once(h: Harness) -> None:
    reader = h.bearer(h.token_for(Role.OPERATOR))
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 10, "type": "login_failure"}
        if cursor is not None:
            params["cursor"] = cursor
        page = h.client.get("/api/v1/audit", params=params, headers=reader).json()
        seen += [event["seq"] for event in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 25 and len(set(seen)) == 25
    assert seen == sorted(seen, reverse=True)


def test_filters(h: Harness) -> None:
    reader = h.bearer(h.token_for(Role.OPERATOR))

    def events(**params: str) -> list[dict[str, object]]:
        reply = h.client.get("/api/v1/audit", params={"limit": 1000, **params}, headers=reader)
        assert reply.status_code == 200, reply.text
        found: list[dict[str, object]] = reply.json()["events"]
        return found

    assert [e["actor"] for e in events(actor="user7")] == ["user7"]
    assert len(events(ip="198.51.100.1", type="login_failure")) == 8
    assert events(severity="critical") == []
    assert len(events(since="2000-01-01T00:00:00Z", type="login_failure")) == 25
    assert events(until="2000-01-01T00:00:00Z") == []
    # Values are bound parameters: an injection finds nothing and breaks nothing.
    assert events(actor="' OR '1'='1") == []
    for bad in ({"type": "no_such_type"}, {"since": "yesterday"}, {"severity": "urgent"}):
        reply = h.client.get("/api/v1/audit", params=bad, headers=reader)
        assert reply.status_code == 400
        assert next(iter(bad)) in reply.json()["detail"]


def test_a_time_window_holds_an_event_at_its_very_start_and_not_at_its_end(h: Harness) -> None:
    # `since` is inclusive, `until` exclusive, to the microsecond, whatever the event's time:
    # on SQLite an event at a whole second was once stored without its `.000000` and then
    # sorted before that same second as a filter bound.
    reader = h.bearer(h.token_for(Role.OPERATOR))
    whole = datetime(2026, 11, 2, 8, 10, tzinfo=UTC)
    for at in (whole, whole + timedelta(microseconds=1)):
        event = Event(EventType.DATA_ACCESS, target=at.isoformat())
        record_alone(h.components.db, event, RequestContext(actor="clock"), at=at)

    def targets(**window: str) -> list[object]:
        params = {"actor": "clock", **window}
        reply = h.client.get("/api/v1/audit", params=params, headers=reader)
        assert reply.status_code == 200, reply.text
        return sorted(e["target"] for e in reply.json()["events"])

    both = sorted([whole.isoformat(), (whole + timedelta(microseconds=1)).isoformat()])
    assert targets(since="2026-11-02T08:10:00Z") == both
    assert targets(since="2026-11-02T08:10:00.000001Z") == both[1:]
    assert targets(until="2026-11-02T08:10:00Z") == []
    assert targets(until="2026-11-02T08:10:00.000001Z") == both[:1]


def test_export_jsonl_and_csv_oldest_first_and_audited(h: Harness) -> None:
    reader = h.bearer(h.token_for(Role.OPERATOR, "auditor"))
    jsonl = h.client.get("/api/v1/audit/export", params={"type": "login_failure"}, headers=reader)
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [r["target"] for r in rows] == [f"user{n}" for n in range(25)]
    table = h.client.get(
        "/api/v1/audit/export", params={"format": "csv", "type": "login_failure"}, headers=reader
    )
    parsed = list(csv.DictReader(io.StringIO(table.text)))
    assert len(parsed) == 25 and parsed[0]["target"] == "user0"
    exports = h.client.get("/api/v1/audit", params={"type": "audit_export"}, headers=reader).json()[
        "events"
    ]
    assert len(exports) == 2 and exports[0]["actor"] == "auditor"


def test_hostile_usernames_stay_one_escaped_event(h: Harness) -> None:
    hostile = 'evil\r\n{"type": "login_success"}\x00=cmd|calc'
    h.client.post("/api/v1/auth/login", json={"username": hostile, "password": "x" * 12})
    reader = h.bearer(h.token_for(Role.OPERATOR))
    lines = h.client.get(
        "/api/v1/audit/export", params={"type": "login_failure"}, headers=reader
    ).text.splitlines()
    assert len(lines) == 26  # the 25 fixtures and this one: no injected line
    last = json.loads(lines[-1])
    assert "\r" not in last["actor"] and "\n" not in last["actor"] and "\x00" not in last["actor"]
    table = h.client.get(
        "/api/v1/audit/export",
        params={"format": "csv", "actor": last["actor"]},
        headers=reader,
    ).text
    [row] = list(csv.DictReader(io.StringIO(table)))
    assert row["actor"] == last["actor"]


def test_formula_cells_are_defused_in_csv(h: Harness) -> None:
    h.components.auditor.record(
        Event(EventType.LOGIN_FAILURE, target='=HYPERLINK("http://evil")'),
        RequestContext(actor="+attacker"),
    )
    reader = h.bearer(h.token_for(Role.OPERATOR))
    table = h.client.get(
        "/api/v1/audit/export", params={"format": "csv", "actor": "+attacker"}, headers=reader
    ).text
    [row] = list(csv.DictReader(io.StringIO(table)))
    assert row["target"].startswith("'=") and row["actor"] == "'+attacker"


def test_siem_sink_status_needs_audit_read(h: Harness) -> None:
    for role in (Role.VIEWER, Role.DEVELOPER):
        denied = h.client.get("/api/v1/siem/sinks", headers=h.bearer(h.token_for(role)))
        assert denied.status_code == 403
    assert h.client.get("/api/v1/siem/sinks").status_code == 401
    reply = h.client.get("/api/v1/siem/sinks", headers=h.bearer(h.token_for(Role.OPERATOR)))
    assert reply.status_code == 200 and reply.json() == []


@pytest.mark.security
def test_siem_sink_status_never_shows_a_stored_error_s_url_path_or_query(h: Harness) -> None:
    # An error stored by an earlier version may quote the collector's URL, whose path or query
    # can be its token: the status shows the URL's scheme and host only.
    with h.components.db() as db:
        db.add(
            SinkCursor(
                sink="f" * 64,
                name="splunk+https://splunk.example.com:8088",
                delivered_seq=0,
                failures=3,
                last_error=(
                    "splunk+https://splunk.example.com:8088: Request URL "
                    "'https://hec:S3CRET-PASS@splunk.example.com:8088"  # pragma: allowlist secret
                    "/services/collector/T0KEN?token=Q5ECRET' failed"
                ),
            )
        )
        db.commit()
    reply = h.client.get("/api/v1/siem/sinks", headers=h.bearer(h.token_for(Role.ADMIN)))
    assert reply.status_code == 200
    [sink] = reply.json()
    assert sink["failures"] == 3
    assert sink["last_error"] == (
        "splunk+https://splunk.example.com:8088: Request URL 'https://splunk.example.com:8088 "
        "failed"
    )
    for secret in ("S3CRET", "T0KEN", "Q5ECRET", "/services/collector"):
        assert secret not in reply.text
