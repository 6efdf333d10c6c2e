"""The served certificate's expiry as an operator sees it: the health report and /metrics over
HTTP, one audit event (and log line) per warning threshold, read back across restarts."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.audit.models import AuditEvent
from wakedock.clock import FakeClock
from wakedock.health.certificate import (
    CertificateStatus,
    CertificateWatch,
    ServedCertificate,
    expiry,
)
from wakedock.rbac.permissions import Role
from wakedock.server.tls import generate_self_signed

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def certificate(tmp_path: Path, *, not_after: datetime, name: str = "cert") -> bytes:
    """A real self-signed certificate (PEM) that ends at `not_after`."""
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem"
    begins = not_after - timedelta(days=90)
    generate_self_signed(cert, key, "wakedock.test", now=begins, valid_for=not_after - begins)
    return cert.read_bytes()


def events(h: Harness) -> list[AuditEvent]:
    with h.components.db() as db:
        return list(
            db.scalars(
                select(AuditEvent)
                .where(AuditEvent.type == "tls_certificate_expiring")
                .order_by(AuditEvent.seq)
            )
        )


def test_status_by_threshold() -> None:
    served = ServedCertificate("x", 1, "ab", START + 40 * DAY)
    thresholds = (30, 14, 3)

    def status_at(now: datetime) -> tuple[CertificateStatus, int | None]:
        standing = expiry(served, now, thresholds)
        return standing.status, standing.threshold

    assert status_at(START) == (CertificateStatus.OK, None)
    assert status_at(START + 10 * DAY) == (CertificateStatus.WARNING, 30)
    assert status_at(START + 26 * DAY) == (CertificateStatus.WARNING, 14)
    assert status_at(START + 37 * DAY) == (CertificateStatus.CRITICAL, 3)
    assert status_at(START + 40 * DAY) == (CertificateStatus.EXPIRED, 0)
    assert expiry(served, START + 39.5 * DAY, thresholds).days_left == 0
    assert expiry(served, START + 41.5 * DAY, thresholds).days_left == -2


def test_health_report_shows_the_certificate(make_harness: Any, tmp_path: Path) -> None:
    clock = FakeClock(START)
    h: Harness = make_harness(clock=clock)
    # Nothing served by this process (no `wakedock serve`): no certificate in the report.
    before = h.client.get("/api/v1/health").json()
    assert before["certificate"] is None
    assert "tls_certificate" not in before["components"]

    not_after = START + 20 * DAY  # whole seconds, as in a certificate
    h.components.certificate.observe(certificate(tmp_path, not_after=not_after))
    report = h.client.get("/api/v1/health")
    assert report.status_code == 200
    body = report.json()
    shown = datetime.fromisoformat(body["certificate"]["not_after"].replace("Z", "+00:00"))
    assert shown == not_after
    assert body["certificate"]["days_left"] == 20
    assert body["certificate"]["status"] == "warning"
    assert body["components"]["tls_certificate"] == "ok"

    clock.advance(timedelta(days=18).total_seconds())
    body = h.client.get("/api/v1/health").json()
    assert body["certificate"]["status"] == "critical"
    assert body["certificate"]["days_left"] == 2
    assert body["components"]["tls_certificate"] == "degraded"
    assert body["status"] == "degraded"

    clock.advance(timedelta(days=3).total_seconds())
    report = h.client.get("/api/v1/health")
    # Expired: degraded, never 503 (the process still serves; a restart would not help).
    assert report.status_code == 200
    assert report.json()["certificate"]["status"] == "expired"
    assert report.json()["certificate"]["days_left"] == -1


def _gauge(text: str) -> float:
    match = re.search(r"^wakedock_tls_certificate_expiry_seconds (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_metrics_expose_the_seconds_left(make_harness: Any, tmp_path: Path) -> None:
    clock = FakeClock(START)
    h: Harness = make_harness(clock=clock, runtime=FakeRuntime())
    operator = h.bearer(h.token_for(Role.OPERATOR))
    assert "wakedock_tls_certificate" not in h.client.get("/metrics", headers=operator).text

    not_after = START + 10 * DAY
    h.components.certificate.observe(certificate(tmp_path, not_after=not_after))
    text = h.client.get("/metrics", headers=operator).text
    assert "# TYPE wakedock_tls_certificate_expiry_seconds gauge" in text
    assert _gauge(text) == 10 * 86400

    clock.advance(11 * 86400)
    operator = h.bearer(h.token_for(Role.OPERATOR))  # the first token expired meanwhile
    assert _gauge(h.client.get("/metrics", headers=operator).text) == -86400


def test_each_threshold_is_audited_and_logged_once(
    make_harness: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(START)
    h: Harness = make_harness(clock=clock)
    watch = h.components.certificate
    pem = certificate(tmp_path, not_after=START + 40 * DAY)
    watch.observe(pem)
    caplog.set_level(logging.WARNING, logger="wakedock.tls")

    watch.check()
    assert events(h) == []
    seen: list[tuple[int, str]] = []
    for days, threshold, severity in ((11, 30, "medium"), (16, 14, "medium"), (10, 3, "high")):
        clock.advance(days * 86400)
        for _ in range(3):  # every round of the reloader's thread checks again
            watch.check()
        seen.append((threshold, severity))
        recorded = [(json.loads(e.details)["threshold_days"], e.severity) for e in events(h)]
        assert recorded == seen
    clock.advance(4 * 86400)
    watch.check()
    watch.check()
    last = events(h)[-1]
    assert (json.loads(last.details)["status"], last.severity) == ("expired", "high")
    assert len(events(h)) == 4
    assert all(e.actor == "system:tls" for e in events(h))
    warnings = [r.getMessage() for r in caplog.records if r.name == "wakedock.tls"]
    assert len(warnings) == 4
    assert "wakedock.test" in warnings[0] and "expired" in warnings[-1]

    # A restart (a new watch over the same trail) does not record them again.
    again = CertificateWatch(clock, h.components.auditor, h.components.db, (30, 14, 3))
    again.observe(pem)
    again.check()
    assert len(events(h)) == 4
    # A new certificate (even with the same dates) is a new one: its own warnings.
    again.observe(certificate(tmp_path, not_after=START + 40 * DAY, name="renewed"))
    again.check()
    assert len(events(h)) == 5


def test_a_certificate_first_seen_within_two_thresholds_is_audited_once(
    make_harness: Any, tmp_path: Path
) -> None:
    """Started 10 days before expiry: the 14-day warning only, not a late 30-day one too."""
    h: Harness = make_harness(clock=FakeClock(START))
    h.components.certificate.observe(certificate(tmp_path, not_after=START + 10 * DAY))
    h.components.certificate.check()
    assert [json.loads(e.details)["threshold_days"] for e in events(h)] == [14]
