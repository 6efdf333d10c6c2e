"""The ModSecurity audit log, read into WakeDock's trail: what a block records, what it never
records, and a log that is rotated while it is followed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.alerts.detect import DetectionSettings, Detector
from wakedock.audit.export import AuditRecord
from wakedock.audit.models import AuditEvent
from wakedock.db import transaction
from wakedock.edge.modsec_log import LogFollower, WafLogIngest, parse_block
from wakedock.rbac.permissions import Role

DATA = Path(__file__).parent / "data"
# Written by nginx + ModSecurity 3.0.9 + CRS 3.3.4 (Debian 12) for
# GET /api/v1/users?search=1' OR '1'='1 on the admin host.
SQLI = (DATA / "sqli_block.json").read_text().strip()
# A 401 from WakeDock that ModSecurity logged (status 4xx) without any rule matching.
NOT_A_BLOCK = (DATA / "not_a_block.json").read_text().strip()


def test_a_block_keeps_rules_scores_address_host_and_path_but_no_payload() -> None:
    block = parse_block(SQLI)
    assert block is not None
    event = block.event()
    assert event.type == "waf_blocked"
    assert event.outcome == "denied"
    assert event.target == "127.0.0.1"
    details = event.details
    assert details["method"] == "GET"
    assert details["path"] == "/api/v1/users"  # no query string
    assert details["client_ip"] == "127.0.0.1"
    assert details["host"] == "127.0.0.1"
    assert details["status"] == 403
    assert "949110" in details["rule_ids"]
    assert any(r.startswith("942") for r in details["rule_ids"])  # the SQL injection rules
    assert details["inbound_anomaly_score"] >= 5
    assert block.context().ip == "127.0.0.1"
    # The payload is in the log line (ModSecurity's matched data), never in the event.
    assert "OR '1'='1" in SQLI
    written = json.dumps(details)
    assert "'1'='1" not in written
    assert "search" not in written


def test_logged_answers_that_no_rule_refused_are_not_blocks() -> None:
    assert parse_block(NOT_A_BLOCK) is None
    assert parse_block("not json") is None
    assert parse_block('{"transaction": 3}') is None


def test_a_long_path_is_truncated() -> None:
    document = json.loads(SQLI)
    document["transaction"]["request"]["uri"] = "/" + "a" * 5000
    block = parse_block(json.dumps(document))
    assert block is not None
    assert len(block.path) == 200
    assert block.path.endswith("...")


def test_the_follower_reads_new_lines_only_and_survives_rotation(tmp_path: Path) -> None:
    log = tmp_path / "modsec_audit.json"
    log.write_text("old\n")
    follower = LogFollower(log)
    assert follower.read_new() == []  # what was there before is not read again
    with log.open("a") as f:
        f.write("one\ntw")
    assert follower.read_new() == [b"one"]  # half a line waits for its end
    with log.open("a") as f:
        f.write("o\n")
    assert follower.read_new() == [b"two"]
    # logrotate: the file is renamed, nginx writes one more line to it, then a new file.
    log.rename(tmp_path / "modsec_audit.json.1")
    with (tmp_path / "modsec_audit.json.1").open("a") as f:
        f.write("three\n")
    log.write_text("four\n")
    assert follower.read_new() == [b"three", b"four"]
    # copytruncate: the same file, emptied (seen at the next poll), then written again.
    log.write_text("")
    assert follower.read_new() == []
    with log.open("a") as f:
        f.write("five\n")
    assert follower.read_new() == [b"five"]
    follower.close()


def test_blocks_reach_the_trail_metrics_and_alerts(make_harness: Any, tmp_path: Path) -> None:
    h: Harness = make_harness(runtime=FakeRuntime())
    log = tmp_path / "modsec_audit.json"
    ingest = WafLogIngest(log, h.components.auditor.record)
    log.write_text(f"{NOT_A_BLOCK}\n{SQLI}\n")
    assert ingest.drain() == 1
    with transaction(h.components.db) as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.type == "waf_blocked")).all()
        records = [AuditRecord.of(row) for row in rows]
    assert len(records) == 1
    assert records[0].severity == "high"
    assert records[0].ip == "127.0.0.1"
    assert records[0].actor == "system:edge"
    operator = h.bearer(h.token_for(Role.OPERATOR))
    metrics = h.client.get("/metrics", headers=operator).text
    assert "wakedock_waf_blocks_total 1" in metrics.splitlines()
    # Alert rules see it as any other high-severity event (SIEM sinks read the same table).
    alerts = Detector(DetectionSettings()).feed(records[0])
    assert [a.rule for a in alerts] == ["severity:waf_blocked"]
