"""Alert flood grouping through the real alert pipeline (the audit trail, the delivery worker,
a webhook receiver on loopback): a scan from one address pages once at once and once with a
summary when the window closes; other addresses alert on their own; the trail keeps every
event."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.webhook import Webhook, webhook_receiver
from wakedock.audit.models import AuditEvent
from wakedock.clock import FakeClock
from wakedock.db import transaction
from wakedock.edge.modsec_log import parse_block

# A block written by nginx + ModSecurity + CRS (Debian 12): the event `edge run` records.
SQLI = json.loads((Path(__file__).parents[1] / "edge" / "data" / "sqli_block.json").read_text())


@pytest.fixture
def receiver() -> Iterator[Webhook]:
    with webhook_receiver() as hook:
        yield hook


@pytest.fixture
def pipeline(make_harness: Any, receiver: Webhook) -> Iterator[tuple[Harness, FakeClock]]:
    clock = FakeClock()
    h: Harness = make_harness(
        clock=clock,
        runtime=FakeRuntime(),
        alerts={"webhooks": [receiver.url], "allowed_networks": ["127.0.0.1/32"]},
        siem={"poll_seconds": 0.05},
    )
    h.components.siem.start()
    yield h, clock
    h.components.siem.stop()


def _block(h: Harness, address: str) -> None:
    document = json.loads(json.dumps(SQLI))
    document["transaction"]["client_ip"] = address
    block = parse_block(json.dumps(document))
    assert block is not None
    h.components.auditor.record(block.event(), block.context())


def _waf_alerts(receiver: Webhook, count: int) -> list[dict[str, Any]]:
    """The waf_blocked alerts received, once `count` have arrived and nothing more for 0.5 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_waf(receiver)) < count:
        time.sleep(0.02)
    time.sleep(0.5)  # time for one too many to show up
    return _waf(receiver)


def _waf(receiver: Webhook) -> list[dict[str, Any]]:
    return [a for a in receiver.received if a["rule"] == "severity:waf_blocked"]


def test_a_scan_from_one_address_alerts_once_then_once_with_a_summary(
    pipeline: tuple[Harness, FakeClock], receiver: Webhook
) -> None:
    h, clock = pipeline
    for _ in range(50):
        _block(h, "203.0.113.9")
        clock.advance(1)
    first = _waf_alerts(receiver, 1)
    assert len(first) == 1
    assert first[0]["facts"]["ip"] == "203.0.113.9"
    assert first[0]["title"] == "HIGH: waf_blocked"
    # The window (300 s by default) closes: the summary comes without any further event.
    clock.advance(300)
    both = _waf_alerts(receiver, 2)
    assert len(both) == 2
    summary = both[1]
    assert summary["title"] == "HIGH: waf_blocked: 49 more from 203.0.113.9 in the last 5 min"
    assert summary["facts"]["more"] == "49"
    assert len(summary["event_ids"]) == 49
    assert not set(summary["event_ids"]) & set(first[0]["event_ids"])
    with transaction(h.components.db) as db:  # nothing lost: the trail has every block
        count = db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.type == "waf_blocked")
        )
    assert count == 50


def test_blocks_from_two_addresses_alert_separately(
    pipeline: tuple[Harness, FakeClock], receiver: Webhook
) -> None:
    h, clock = pipeline
    for _ in range(3):
        _block(h, "203.0.113.9")
        _block(h, "198.51.100.7")
    alerts = _waf_alerts(receiver, 2)
    assert sorted(a["facts"]["ip"] for a in alerts) == ["198.51.100.7", "203.0.113.9"]
    clock.advance(301)
    alerts = _waf_alerts(receiver, 4)
    summaries = {a["facts"]["ip"]: a["facts"]["more"] for a in alerts if "more" in a["facts"]}
    assert summaries == {"203.0.113.9": "2", "198.51.100.7": "2"}
    # A block after the window opens a new group: alerted at once again.
    _block(h, "203.0.113.9")
    assert len(_waf_alerts(receiver, 5)) == 5


def test_a_zero_window_sends_every_alert(make_harness: Any, receiver: Webhook) -> None:
    h: Harness = make_harness(
        runtime=FakeRuntime(),
        alerts={
            "webhooks": [receiver.url],
            "allowed_networks": ["127.0.0.1/32"],
            "group_window_seconds": 0,
        },
        siem={"poll_seconds": 0.05},
    )
    h.components.siem.start()
    try:
        for _ in range(5):
            _block(h, "203.0.113.9")
        assert len(_waf_alerts(receiver, 5)) == 5
    finally:
        h.components.siem.stop()
