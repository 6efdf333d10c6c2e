"""`/admin/audit`, the console's audit trail, in process: filters and cursor pages, the export of
exactly the filtered view, the live tail, an event's detail (hostile values escaped), the chain's
check (passes, then names the row tampered in the database), and who may use any of it."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from conftest import CLIENT_IP, Harness
from support.fake_runtime import FakeRuntime
from support.pages import HERE, SAME_ORIGIN, events
from wakedock.audit import checks
from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.service import Auditor, record_alone
from wakedock.audit.verify import Verdict, verify_chain
from wakedock.cli_state import cli_context
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role

from .conftest import Console, SignIn

FORM = {"Content-Type": "application/x-www-form-urlencoded", **SAME_ORIGIN}
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def record(
    h: Harness,
    actor: str,
    *,
    type_: EventType = EventType.DATA_ACCESS,
    target: str | None = "t-1",
    ip: str = "203.0.113.7",
    at: datetime = T0,
    severity: Severity | None = None,
    details: dict[str, object] | None = None,
) -> int:
    event = Event(type_, Outcome.SUCCESS, target, severity, details or {"probe": True})
    return record_alone(h.components.db, event, RequestContext(ip=ip, actor=actor), at=at)


def seqs(page: str) -> list[int]:
    """The events a page or fragment lists, as shown (newest first)."""
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', page)]


def export_links(page: str) -> dict[str, str]:
    found = re.findall(r'<a data-export href="([^"]+)"', page)
    return {("csv" if "format=csv" in link else "jsonl"): html.unescape(link) for link in found}


def verify(h: Harness, admin: Console) -> str:
    """Press "verify now", wait for the background check, and read the chain's part."""
    answer = admin.browser.post(
        "/admin/audit/verify", data={"csrf_token": admin.csrf}, headers=FORM
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin/audit#chain"
    h.components.chain_checks.wait(timeout=60)
    chain = admin.browser.get("/admin/audit/chain")
    assert chain.status_code == 200
    assert 'data-running="false"' in chain.text
    return chain.text


def same_session_on(other: Harness, admin: Console) -> TestClient:
    """The admin's browser (its session cookie) talking to another app on the same database:
    another worker of the server, or the server after a restart."""
    return TestClient(
        other.app,
        base_url=HERE,
        client=(CLIENT_IP, 50599),
        cookies=dict(admin.browser.cookies),
        follow_redirects=False,
    )


def held_walk(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The real walk, held after its third event (as a long one would be) until released."""
    reached, release = threading.Event(), threading.Event()

    def held(factory: Any, chain: Any, progress: Any, *, every: int) -> Verdict:
        def report(checked: int) -> None:
            progress(checked)
            if checked == 3:
                reached.set()
                release.wait(timeout=60)

        return verify_chain(factory, chain, report, every=1)

    monkeypatch.setattr(checks, "verify_chain", held)
    return reached, release


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    reached, release = held_walk(monkeypatch)
    yield reached, release
    release.set()  # a failed test does not leave the walk waiting


def test_filters_narrow_the_trail_and_pages_follow_the_cursor(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    made = [
        record(h, "probe", target=f"t-{i % 2}", at=T0 + timedelta(minutes=i)) for i in range(60)
    ]
    other_ip = record(h, "probe", ip="198.51.100.9", type_=EventType.SERVICE_START)
    loud = record(h, "someone-else", severity=Severity.HIGH)

    first = admin.browser.get("/admin/audit", params={"actor": "probe", "type": "data_access"})
    assert first.status_code == 200, first.text
    assert seqs(first.text) == sorted(made, reverse=True)[:50]
    older = html.unescape(re.findall(r'<a href="([^"]+)" rel="next">Older events', first.text)[0])
    second = admin.browser.get(older)
    assert seqs(second.text) == sorted(made, reverse=True)[50:]
    assert "Older events" not in second.text

    by_target = admin.browser.get(
        "/admin/audit", params={"actor": "probe", "target": "t-1", "type": "data_access"}
    )
    assert seqs(by_target.text) == sorted((s for i, s in enumerate(made) if i % 2), reverse=True)
    by_ip = admin.browser.get("/admin/audit", params={"ip": "198.51.100.9"})
    assert seqs(by_ip.text) == [other_ip]
    by_severity = admin.browser.get("/admin/audit", params={"severity": "high", "actor": ""})
    assert loud in seqs(by_severity.text) and made[0] not in seqs(by_severity.text)
    window = admin.browser.get(
        "/admin/audit",
        params={"actor": "probe", "since": "2026-11-02T08:09:30Z", "until": "2026-11-02T08:12:30"},
    )
    assert seqs(window.text) == [made[12], made[11], made[10]]


def test_the_reference_a_refusal_shows_finds_its_events(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    refused = Event(EventType.ZERO_TRUST_DECISION, Outcome.DENIED, details={"decision": "deny"})
    wanted = record_alone(
        h.components.db,
        refused,
        RequestContext(ip="203.0.113.7", request_id="5f3a9c0d1e2b4a68"),
        at=T0,
    )
    other = RequestContext(ip="203.0.113.7", request_id="0000aaaa1111bbbb")
    record_alone(h.components.db, refused, other, at=T0)
    page = admin.browser.get("/admin/audit", params={"request_id": "5f3a9c0d1e2b4a68"})
    assert page.status_code == 200, page.text
    assert seqs(page.text) == [wanted]
    assert 'name="request_id" maxlength="64" value="5f3a9c0d1e2b4a68"' in page.text


def test_a_bad_filter_is_named_on_the_page(signed_in: SignIn) -> None:
    admin = signed_in(Role.ADMIN)
    answer = admin.browser.get("/admin/audit", params={"since": "yesterday"})
    assert answer.status_code == 400
    assert "since: not an ISO 8601 time" in answer.text
    assert seqs(answer.text) == []


def test_the_export_holds_exactly_the_filtered_view(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    wanted = [record(h, "exported", target="db") for _ in range(3)]
    record(h, "exported", target="cache")
    record(h, "not-exported", target="db")
    page = admin.browser.get("/admin/audit", params={"actor": "exported", "target": "db"})
    assert seqs(page.text) == wanted[::-1]
    # Made after the page was drawn: not in the view, so not in its export.
    record(h, "exported", target="db")

    links = export_links(page.text)
    jsonl = admin.browser.get(links["jsonl"])
    assert jsonl.status_code == 200, jsonl.text
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    disposition = jsonl.headers["content-disposition"]
    assert "wakedock-audit-filtered-" in disposition and "actor-exported" in disposition
    assert "target-db" in disposition and disposition.endswith('.jsonl"')
    rows = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [row["seq"] for row in rows] == wanted
    assert {row["actor"] for row in rows} == {"exported"}

    table = admin.browser.get(links["csv"])
    assert table.headers["content-disposition"].endswith('.csv"')
    lines = list(csv.DictReader(io.StringIO(table.text)))
    assert [int(line["seq"]) for line in lines] == wanted
    exported = events(h, "audit_export")
    assert exported and exported[-1].actor == admin.username
    assert '"actor": "exported"' in exported[-1].details


def test_the_live_tail_brings_new_matching_events_only(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN)
    page = admin.browser.get("/admin/audit", params={"actor": "tailed"})
    newest = re.search(r'data-newest="(\d+)"', page.text)
    assert newest and 'data-live="/admin/audit/live?actor=tailed"' in page.text
    fresh = record(h, "tailed")
    record(h, "elsewhere")
    tail = admin.browser.get("/admin/audit/live", params={"actor": "tailed", "after": newest[1]})
    assert tail.status_code == 200
    assert seqs(tail.text) == [fresh]
    assert f'data-newest="{fresh}"' in tail.text
    assert 'integrity="sha256-' in page.text and "/assets/console-audit.js" in page.text
    script = admin.browser.get("/assets/console-audit.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")


@pytest.mark.security
def test_hostile_values_are_escaped_in_the_list_and_the_detail(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    hostile = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    seq = record(h, hostile, target=hostile, details={"note": hostile})
    listed = admin.browser.get("/admin/audit", params={"actor": hostile})
    detail = admin.browser.get(f"/admin/audit/{seq}")
    assert detail.status_code == 200
    assert seqs(listed.text) == [seq]
    for page in (listed.text, detail.text):
        assert "<img src=x" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail.text
    assert "\\u003cscript\\u003e" in detail.text  # the details' JSON, as text
    assert f"<h1>Audit event {seq}</h1>" in detail.text
    assert admin.browser.get("/admin/audit/999999").status_code == 404


def test_verify_passes_then_names_the_event_tampered_in_the_database(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    victim = record(h, "bystander")
    record(h, "bystander")
    chain = verify(h, admin)
    assert "Chain intact" in chain and "Tampered" not in chain
    page = admin.browser.get("/admin/audit")
    assert "Chain intact" in page.text
    head = h.components.chain_checks.state().head_seq
    assert f'<dd data-field="head">{head}</dd>' in page.text

    with h.components.db.begin() as db:
        tamper = text("UPDATE audit_events SET target = 'nothing-happened' WHERE seq = :s")
        db.execute(tamper, {"s": victim})
    chain = verify(h, admin)
    assert "Tampered" in chain
    assert f"(seq {victim}, data_access" in chain
    assert f'<a href="/admin/audit/{victim}" data-field="bad-seq">seq {victim}</a>' in chain
    results = [e for e in events(h, "audit_verify") if '"result"' in e.details]
    assert [e.outcome for e in results] == ["success", "failure"]
    assert results[-1].severity == "critical" and results[-1].actor == admin.username


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_operators_and_viewers_get_403_everywhere(
    signed_in: SignIn, h: Harness, role: Role
) -> None:
    someone = signed_in(role)
    seq = record(h, "anyone")
    for path in ("/admin/audit", f"/admin/audit/{seq}", "/admin/audit/export?format=csv"):
        answer = someone.browser.get(path)
        assert answer.status_code == 403, path
        assert "Only administrators may open the admin console." in answer.text
    for path in ("/admin/audit/chain", f"/admin/audit/live?after={seq - 1}"):
        assert someone.browser.get(path).status_code == 403, path
    forged = someone.browser.post(
        "/admin/audit/verify", data={"csrf_token": someone.csrf}, headers=FORM
    )
    assert forged.status_code == 403
    state = h.components.chain_checks.state()
    assert state.last is None and not state.busy
    assert not events(h, "audit_verify")


@pytest.mark.security
def test_verify_without_the_csrf_token_or_from_elsewhere_is_refused(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    no_token = admin.browser.post("/admin/audit/verify", data={}, headers=FORM)
    assert no_token.status_code == 403
    elsewhere = admin.browser.post(
        "/admin/audit/verify",
        data={"csrf_token": admin.csrf},
        headers={**FORM, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert elsewhere.status_code == 403
    state = h.components.chain_checks.state()
    assert state.last is None and not state.busy
    assert len(events(h, "csrf_failure")) >= 2


def test_a_running_check_shows_its_progress_and_runs_only_once(
    signed_in: SignIn, h: Harness, released: tuple[threading.Event, threading.Event]
) -> None:
    admin = signed_in(Role.ADMIN)
    for _ in range(5):
        record(h, "counted")
    reached, release = released
    form = {"csrf_token": admin.csrf}
    assert admin.browser.post("/admin/audit/verify", data=form, headers=FORM).status_code == 303
    assert reached.wait(timeout=60)
    total = h.components.chain_checks.state().running
    assert total is not None
    chain = admin.browser.get("/admin/audit/chain").text
    assert 'data-running="true"' in chain and '<button type="submit" disabled>' in chain
    assert f"3 of {total.total} events checked" in chain
    # A second press while it runs starts nothing.
    assert admin.browser.post("/admin/audit/verify", data=form, headers=FORM).status_code == 303
    release.set()
    h.components.chain_checks.wait(timeout=60)
    assert "Chain intact" in admin.browser.get("/admin/audit/chain").text
    starts = [e for e in events(h, "audit_verify") if '"start"' in e.details]
    assert len(starts) == 1


def test_the_clis_verify_is_recorded_and_shown_with_its_time_and_result(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    victim = record(h, "bystander")
    cli = cli_context()
    # What `wakedock audit verify` calls, with the CLI's own auditor and context.
    trail = h.components.db, h.components.audit_chain
    intact = checks.verify_recorded(*trail, Auditor(h.components.db, h.components.clock), cli)
    assert intact.ok
    results = [e for e in events(h, "audit_verify") if '"result"' in e.details]
    assert [(e.actor, e.outcome) for e in results] == [(cli.actor, "success")]
    chain = admin.browser.get("/admin/audit/chain").text
    at = results[0].occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f'<dd data-field="verified">{at} by {cli.actor}</dd>' in chain
    assert "Chain intact" in chain and f"{intact.checked} events checked" in chain

    with h.components.db.begin() as db:
        tamper = text("UPDATE audit_events SET actor = 'nobody' WHERE seq = :s")
        db.execute(tamper, {"s": victim})
    broken = checks.verify_recorded(*trail, Auditor(h.components.db, h.components.clock), cli)
    assert broken.seq == victim
    chain = admin.browser.get("/admin/audit").text
    assert "Tampered" in chain and "Chain intact" not in chain
    assert f'<a href="/admin/audit/{victim}" data-field="bad-seq">seq {victim}</a>' in chain


def test_a_second_worker_sees_the_running_check_and_starts_no_other(
    signed_in: SignIn,
    h: Harness,
    make_harness: Callable[..., Harness],
    runtime: FakeRuntime,
    released: tuple[threading.Event, threading.Event],
) -> None:
    admin = signed_in(Role.ADMIN)
    for _ in range(5):
        record(h, "counted")
    reached, release = released
    other = make_harness(runtime=runtime)  # a second worker on the same database
    there = same_session_on(other, admin)
    form = {"csrf_token": admin.csrf}
    assert admin.browser.post("/admin/audit/verify", data=form, headers=FORM).status_code == 303
    assert reached.wait(timeout=60)

    chain = there.get("/admin/audit/chain").text
    assert 'data-running="true"' in chain and '<button type="submit" disabled>' in chain
    assert "A check is running (started by another worker)." in chain
    # Pressed on the other worker while the first one's check runs: nothing starts.
    assert there.post("/admin/audit/verify", data=form, headers=FORM).status_code == 303
    assert not other.components.chain_checks.start(RequestContext(actor="second"))
    assert other.components.chain_checks.state().running is None
    starts = [e for e in events(h, "audit_verify") if '"start"' in e.details]
    assert [e.actor for e in starts] == [admin.username]

    release.set()
    h.components.chain_checks.wait(timeout=60)
    chain = there.get("/admin/audit/chain").text
    assert 'data-running="false"' in chain and "Chain intact" in chain
    assert f" by {admin.username}</dd>" in chain


def test_after_a_restart_the_last_result_is_still_shown(
    signed_in: SignIn, h: Harness, make_harness: Callable[..., Harness], runtime: FakeRuntime
) -> None:
    admin = signed_in(Role.ADMIN)
    victim = record(h, "bystander")
    with h.components.db.begin() as db:
        tamper = text("UPDATE audit_events SET target = 'nothing-happened' WHERE seq = :s")
        db.execute(tamper, {"s": victim})
    assert "Tampered" in verify(h, admin)

    restarted = make_harness(runtime=runtime)
    page = same_session_on(restarted, admin).get("/admin/audit")
    assert page.status_code == 200, page.text
    assert "Tampered" in page.text and f" by {admin.username}</dd>" in page.text
    assert f'data-field="bad-seq">seq {victim}</a>' in page.text
