"""Detections over the audit stream (S8.4): which events become alerts.

- every high or critical event (token reuse, path traversal, policy violations, MFA resets...);
- brute force: failed logins from one IP against several accounts within a window;
- privilege escalation: a user created as, or changed to, admin;
- repeated policy violations by one actor;
- a successful login from a country this user never logged in from (with a GeoIP database);
- the served TLS certificate reaching a warning threshold before it expires.

Windows live in memory; a repeat of the same detection is suppressed for its window.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from wakedock.audit.export import AuditRecord


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    title: str
    # Safe to send: no secrets (audit events never hold any).
    facts: dict[str, str]
    event_ids: tuple[str, ...]


@dataclass
class DetectionSettings:
    brute_force_failures: int = 10
    brute_force_accounts: int = 2
    brute_force_window: timedelta = field(default_factory=lambda: timedelta(minutes=5))
    policy_violations: int = 3
    policy_window: timedelta = field(default_factory=lambda: timedelta(minutes=10))


def _at(record: AuditRecord) -> datetime:
    return datetime.fromisoformat(record.occurred_at.replace("Z", "+00:00"))


class CountryOf(Protocol):
    def __call__(self, ip: str) -> str | None: ...


class Detector:
    def __init__(self, settings: DetectionSettings, country_of: CountryOf | None = None) -> None:
        self._s = settings
        self._country_of = country_of
        self._countries: dict[str, set[str]] = defaultdict(set)
        self._failures: dict[str, deque[tuple[datetime, str, str]]] = defaultdict(deque)
        self._violations: dict[str, deque[datetime]] = defaultdict(deque)
        self._quiet_until: dict[tuple[str, str], datetime] = {}

    def _suppressed(self, rule: str, key: str, now: datetime, window: timedelta) -> bool:
        until = self._quiet_until.get((rule, key))
        if until is not None and now < until:
            return True
        self._quiet_until[(rule, key)] = now + window
        return False

    def feed(self, record: AuditRecord) -> list[Alert]:
        """The alerts this event raises (often none)."""
        alerts: list[Alert] = []
        event_id = f"wakedock-{record.seq}"
        now = _at(record)
        if record.severity in ("high", "critical"):
            alerts.append(
                Alert(
                    f"severity:{record.type}",
                    record.severity,
                    f"{record.severity.upper()}: {record.type}",
                    _facts(record),
                    (event_id,),
                )
            )
        if record.type == "login_failure" and record.ip:
            alerts += self._brute_force(record, now, event_id)
        if record.type in ("role_change", "user_create") and _grants_admin(record):
            alerts.append(
                Alert(
                    "privilege:admin",
                    "high",
                    "A user was granted admin",
                    _facts(record),
                    (event_id,),
                )
            )
        if record.type == "tls_certificate_expiring" and record.severity not in (
            "high",
            "critical",
        ):
            # Every warning threshold (30 and 14 days by default) alerts; the last one and the
            # expiry are high, alerted above.
            alerts.append(
                Alert(
                    "tls:certificate_expiring",
                    record.severity,
                    f"The TLS certificate expires in {record.details.get('days_left', '?')} days",
                    _facts(record),
                    (event_id,),
                )
            )
        if record.type == "policy_violation" and record.actor:
            alerts += self._policy(record, now, event_id)
        if record.type == "login_success" and record.actor and record.ip and self._country_of:
            alerts += self._new_country(record, event_id)
        return alerts

    def _new_country(self, record: AuditRecord, event_id: str) -> list[Alert]:
        country = self._country_of(record.ip or "") if self._country_of else None
        if country is None:
            return []
        seen = self._countries[record.actor or "?"]
        first_login = not seen
        is_new = country not in seen
        seen.add(country)
        if first_login or not is_new:
            return []
        facts = {"actor": record.actor or "?", "ip": record.ip or "?", "country": country,
                 "known": ", ".join(sorted(seen - {country}))}  # fmt: skip
        return [
            Alert(
                "new_country", "high", f"Login from a new country ({country})", facts, (event_id,)
            )
        ]

    def _brute_force(self, record: AuditRecord, now: datetime, event_id: str) -> list[Alert]:
        ip = record.ip or "?"
        window = self._failures[ip]
        window.append((now, record.actor or "?", event_id))
        while window and now - window[0][0] > self._s.brute_force_window:
            window.popleft()
        accounts = {actor for _, actor, _ in window}
        if (
            len(window) < self._s.brute_force_failures
            or len(accounts) < self._s.brute_force_accounts
            or self._suppressed("brute_force", ip, now, self._s.brute_force_window)
        ):
            return []
        facts = {
            "ip": ip,
            "failures": str(len(window)),
            "accounts": str(len(accounts)),
            "window": f"{int(self._s.brute_force_window.total_seconds())} s",
        }
        ids = tuple(e for _, _, e in window)
        return [Alert("brute_force", "high", f"Brute force from {ip}", facts, ids)]

    def _policy(self, record: AuditRecord, now: datetime, event_id: str) -> list[Alert]:
        actor = record.actor or "?"
        window = self._violations[actor]
        window.append(now)
        while window and now - window[0] > self._s.policy_window:
            window.popleft()
        if len(window) < self._s.policy_violations or self._suppressed(
            "policy", actor, now, self._s.policy_window
        ):
            return []
        facts = {"actor": actor, "violations": str(len(window))}
        return [
            Alert(
                "repeated_policy_violations",
                "high",
                f"Repeated policy violations by {actor}",
                facts,
                (event_id,),
            )
        ]


def _grants_admin(record: AuditRecord) -> bool:
    # user_create records {"role": ...}; role_change records {"from": ..., "to": ...}.
    return "admin" in (record.details.get("role"), record.details.get("to"))


def _facts(record: AuditRecord) -> dict[str, str]:
    facts = {"event": record.type, "outcome": record.outcome, "time": record.occurred_at}
    for name in ("actor", "ip", "target"):
        value = getattr(record, name)
        if value:
            facts[name] = str(value)
    return facts
