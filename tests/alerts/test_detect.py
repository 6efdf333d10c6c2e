"""Detections over audit records: brute force across accounts, token reuse, admin grants,
repeated policy violations; repeats suppressed within their window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from wakedock.alerts.detect import DetectionSettings, Detector
from wakedock.alerts.geoip import GeoIP
from wakedock.audit.export import AuditRecord

START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
_seq = iter(range(1, 10_000))


def record(
    type_: str, *, at: timedelta = timedelta(0), severity: str = "low", **extra: Any
) -> AuditRecord:
    fields: dict[str, Any] = {
        "id": 1, "seq": next(_seq), "occurred_at": (START + at).isoformat().replace("+00:00", "Z"),
        "type": type_, "severity": severity, "outcome": "failure", "actor": None, "ip": None,
        "user_agent": None, "target": None, "request_id": None, "details": {}, "hash": "0" * 64,
    }  # fmt: skip
    fields.update(extra)
    return AuditRecord(**fields)


def rules(alerts: list[Any]) -> list[str]:
    return [a.rule for a in alerts]


def test_brute_force_across_accounts_from_one_ip_alerts_once() -> None:
    detector = Detector(DetectionSettings(brute_force_failures=5))
    raised = []
    for n in range(12):
        raised += detector.feed(
            record("login_failure", at=timedelta(seconds=n), ip="203.0.113.9", actor=f"u{n % 3}")
        )
    assert rules(raised) == ["brute_force"]
    assert raised[0].facts["ip"] == "203.0.113.9" and raised[0].facts["accounts"] == "3"


def test_failures_on_one_account_or_spread_in_time_are_not_brute_force() -> None:
    detector = Detector(DetectionSettings(brute_force_failures=5))
    one_account = [record("login_failure", ip="203.0.113.9", actor="alice") for _ in range(8)]
    slow = [
        record("login_failure", at=timedelta(minutes=10 * n), ip="198.51.100.1", actor=f"u{n}")
        for n in range(8)
    ]
    assert [a for r in one_account + slow for a in detector.feed(r)] == []


def test_high_events_admin_grants_and_repeated_violations() -> None:
    detector = Detector(DetectionSettings())
    assert rules(detector.feed(record("token_reuse", severity="high"))) == ["severity:token_reuse"]
    assert "privilege:admin" in rules(
        detector.feed(
            record("role_change", severity="high", details={"from": "viewer", "to": "admin"})
        )
    )
    assert rules(detector.feed(record("user_create", details={"role": "admin"}))) == [
        "privilege:admin"
    ]
    assert detector.feed(record("user_create", details={"role": "viewer"})) == []
    raised = []
    for n in range(4):
        raised += detector.feed(
            record("policy_violation", at=timedelta(seconds=n), severity="medium", actor="dev")
        )
    assert rules(raised) == ["repeated_policy_violations"]


def test_login_from_a_new_country_with_a_real_geoip_database(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country", languages=["en"])
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "FR"}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "BR"}})
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))
    detector = Detector(DetectionSettings(), GeoIP(path))

    def login(ip: str, actor: str = "alice") -> list[str]:
        return rules(detector.feed(record("login_success", severity="info", actor=actor, ip=ip)))

    assert login("203.0.113.5") == []  # the first login teaches, it does not alert
    assert login("203.0.113.77") == []  # same country
    assert login("192.0.2.1") == []  # unknown to the database: no verdict
    assert login("198.51.100.9") == ["new_country"]
    assert login("198.51.100.10") == []  # known now
    assert login("198.51.100.9", actor="bob") == []  # bob's first login


def test_an_unreadable_geoip_database_is_a_clear_start_up_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    with pytest.raises(ValueError, match=r"alerts\.geoip_database: cannot open"):
        GeoIP(broken)


def test_every_certificate_expiry_warning_alerts_once() -> None:
    """30 and 14 days (medium) raise the certificate rule; 3 days and expiry (high) the
    severity rule: one alert per audit event either way."""
    detector = Detector(DetectionSettings())
    medium = detector.feed(
        record("tls_certificate_expiring", severity="medium", details={"days_left": 29})
    )
    assert rules(medium) == ["tls:certificate_expiring"]
    assert "29 days" in medium[0].title
    high = detector.feed(
        record("tls_certificate_expiring", severity="high", details={"days_left": 2})
    )
    assert rules(high) == ["severity:tls_certificate_expiring"]
    assert detector.feed(record("tls_certificate_renewed", severity="low")) == []
