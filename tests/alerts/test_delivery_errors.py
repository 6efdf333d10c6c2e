"""What a failed alert delivery says (the posture page, `GET /api/v1/siem/sinks` and the log
show it): the webhook's host and what went wrong, never its URL's path or query, which can be
the webhook's credentials (a Slack URL's path is)."""

from __future__ import annotations

import secrets
import socket

import pytest

from wakedock.alerts.webhooks import make_alert_sink
from wakedock.audit.export import AuditRecord
from wakedock.config.sections import AlertSettings
from wakedock.siem.sinks import SinkError

pytestmark = pytest.mark.security


def test_an_unreachable_webhook_is_reported_without_its_secret_path_or_token() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once closed
    path, token = secrets.token_urlsafe(18), secrets.token_hex(12)
    url = f"http://127.0.0.1:{closed}/services/T0/B0/{path}?token={token}"
    sink = make_alert_sink(AlertSettings(webhooks=[url], allowed_networks=["127.0.0.1/32"]))
    reuse = AuditRecord(
        id=1, seq=1, occurred_at="2026-12-02T10:00:00Z", type="token_reuse", severity="high",
        outcome="failure", actor="holder", ip="192.0.2.7", user_agent=None, target="holder",
        request_id=None, details={}, hash="0" * 64,
    )  # fmt: skip
    try:
        with pytest.raises(SinkError) as refused:
            sink.send([reuse])
    finally:
        sink.close()
    assert str(refused.value) == "alert webhook 127.0.0.1: could not connect"
    assert refused.value.__cause__ is None  # no chained error quoting the URL in a traceback
