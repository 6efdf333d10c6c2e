"""The seed's security KPIs, measured from the audit trail and the database (never typed in).

Every query is bounded by a time window on the indexed `occurred_at` and aggregated in SQL
(counts per hour, grouped by type); only the alert receipts are read row by row, at most
`ALERT_ROWS` of them, because their median needs each delay.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from wakedock.audit.events import EventType
from wakedock.audit.models import AuditEvent
from wakedock.mfa.reporting import adoption_by_role
from wakedock.rbac.permissions import Role

SIGN_IN_HOURS = 24
ALERT_DAYS = 7
ALERT_ROWS = 200
# The seed's targets: every admin enrolled, more than 80% of the other users; alerts delivered
# within five minutes of what raised them.
ADMIN_TARGET = 100.0
USER_TARGET = 80.0
MTTD_TARGET_SECONDS = 300.0


@dataclass(frozen=True)
class Adoption:
    """MFA adoption of one group of accounts against its target."""

    group: str
    users: int
    enrolled: int
    target: str

    @property
    def percent(self) -> float:
        return round(100.0 * self.enrolled / self.users, 1) if self.users else 0.0

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without any account to measure."""
        if not self.users:
            return None
        if self.group == Role.ADMIN.value:
            return self.enrolled == self.users
        return self.percent > USER_TARGET


def mfa_adoption(db: Session) -> list[Adoption]:
    """Admins, every other role, and all non-admin users together (the seed's "users")."""
    figures = adoption_by_role(db)
    rows = []
    for role, f in figures.items():
        target = "100%" if role == Role.ADMIN.value else f"over {USER_TARGET:.0f}%"
        rows.append(Adoption(role, f.users, f.enrolled, target))
    others = [f for role, f in figures.items() if role != Role.ADMIN.value]
    rows.append(
        Adoption(
            "all users but admins",
            sum(f.users for f in others),
            sum(f.enrolled for f in others),
            f"over {USER_TARGET:.0f}%",
        )
    )
    return rows


@dataclass(frozen=True)
class SignInSeries:
    """Per hour over the last `SIGN_IN_HOURS`, oldest first; `hours` are "YYYY-MM-DD HH"."""

    hours: list[str]
    failed: list[int]
    limited: list[int]
    locked_out: list[int]


def _hour(db: Session, column: Any) -> ColumnElement[str]:
    """The UTC hour of a timestamp, as text "YYYY-MM-DD HH", in the database's own SQL."""
    if db.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    # SQLite keeps UTC as "YYYY-MM-DD HH:MM:SS[.ffffff]" text (db.UTCDateTime).
    return func.substr(column, 1, 13)


def sign_in_series(db: Session, now: datetime) -> SignInSeries:
    """Failed sign-ins, rate-limit hits and the accounts they locked out, per hour."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=SIGN_IN_HOURS - 1)
    hours = [(first + timedelta(hours=n)).strftime("%Y-%m-%d %H") for n in range(SIGN_IN_HOURS)]
    hour = _hour(db, AuditEvent.occurred_at)
    rows = db.execute(
        select(hour, AuditEvent.type, func.count(), func.count(AuditEvent.target.distinct()))
        .where(
            AuditEvent.occurred_at >= first,
            AuditEvent.type.in_([EventType.LOGIN_FAILURE.value, EventType.RATE_LIMIT_HIT.value]),
        )
        .group_by(hour, AuditEvent.type)
    ).all()
    failed = dict.fromkeys(hours, 0)
    limited = dict.fromkeys(hours, 0)
    locked = dict.fromkeys(hours, 0)
    for at, kind, count, targets in rows:
        if at not in failed:
            continue  # a clock set back: not this window's
        if kind == EventType.LOGIN_FAILURE.value:
            failed[at] = int(count)
        else:
            limited[at] = int(count)
            # A refused attempt names the account it was refused for: locked out this hour.
            locked[at] = int(targets)
    return SignInSeries(hours, list(failed.values()), list(limited.values()), list(locked.values()))


@dataclass(frozen=True)
class DeliveredAlert:
    """An alert that reached every webhook, and how long after what raised it."""

    rule: str
    severity: str
    title: str
    raised_at: datetime | None
    delivered_at: datetime
    summary: bool

    @property
    def seconds(self) -> float | None:
        """Time to delivery (the MTTD of this alert); None for a flood's summary."""
        if self.raised_at is None or self.summary:
            return None
        return max((self.delivered_at - self.raised_at).total_seconds(), 0.0)

    @property
    def on_target(self) -> bool:
        return self.seconds is not None and self.seconds < MTTD_TARGET_SECONDS


def _when(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def delivered_alerts(db: Session, now: datetime) -> list[DeliveredAlert]:
    """The alerts delivered over the last `ALERT_DAYS`, newest first (at most `ALERT_ROWS`)."""
    rows = db.execute(
        select(AuditEvent.occurred_at, AuditEvent.details)
        .where(
            AuditEvent.type == EventType.ALERT_DELIVERED.value,
            AuditEvent.occurred_at >= now - timedelta(days=ALERT_DAYS),
        )
        .order_by(AuditEvent.seq.desc())
        .limit(ALERT_ROWS)
    ).all()
    found = []
    for delivered_at, text in rows:
        details = json.loads(text or "{}")
        found.append(
            DeliveredAlert(
                rule=str(details.get("rule", "?")),
                severity=str(details.get("severity", "?")),
                title=str(details.get("title", "")),
                raised_at=_when(details.get("raised_at")),
                delivered_at=delivered_at,
                summary=bool(details.get("summary")),
            )
        )
    return found


def median_seconds(alerts: Sequence[DeliveredAlert]) -> float | None:
    """The median time to delivery (the seed's MTTD), None without a measured alert."""
    delays = [a.seconds for a in alerts if a.seconds is not None]
    return statistics.median(delays) if delays else None
