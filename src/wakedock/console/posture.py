"""The seed's security KPIs, measured from the audit trail and the database (never typed in).

Every query is bounded by a time window on the indexed `occurred_at` and aggregated in SQL
(counts per hour, grouped by type); only the alerts raised and their receipts are read row by
row, at most `ALERT_ROWS` raised, because each is listed and their median needs each delay.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from wakedock.audit.events import EventType
from wakedock.audit.models import AuditEvent
from wakedock.mfa.reporting import adoption_by_role
from wakedock.rbac.permissions import Role
from wakedock.siem.exporter import SinkStatus

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


class AlertState(StrEnum):
    DELIVERED = "delivered"
    # Raised, not delivered yet, and the pipeline's last attempt did not fail.
    PENDING = "pending"
    # Raised, not delivered, and the pipeline's last attempt failed: it retries with backoff.
    FAILING = "failed, retrying"


@dataclass(frozen=True)
class RaisedAlert:
    """An alert the pipeline raised, and its delivery to every webhook if it happened."""

    rule: str
    severity: str
    title: str
    raised_at: datetime | None
    delivered_at: datetime | None
    summary: bool

    @property
    def seconds(self) -> float | None:
        """Time to delivery (the MTTD of this alert); None undelivered or a flood's summary."""
        if self.raised_at is None or self.delivered_at is None or self.summary:
            return None
        return max((self.delivered_at - self.raised_at).total_seconds(), 0.0)

    @property
    def on_target(self) -> bool:
        return self.seconds is not None and self.seconds < MTTD_TARGET_SECONDS

    def waiting(self, now: datetime) -> float | None:
        """How long an undelivered alert has waited since what raised it."""
        if self.delivered_at is not None or self.raised_at is None:
            return None
        return max((now - self.raised_at).total_seconds(), 0.0)


def _when(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _identity(details: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """What a receipt repeats of the alert it delivers. An alert raised again after a restart
    (its batch was not acknowledged) has the same: it is listed once."""
    ids = details.get("event_ids")
    events = tuple(str(i) for i in ids) if isinstance(ids, list) else ()
    return str(details.get("rule", "?")), str(details.get("raised_at", "")), events


def raised_alerts(db: Session, now: datetime) -> list[RaisedAlert]:
    """The alerts raised over the last `ALERT_DAYS`, newest first (at most `ALERT_ROWS`), each
    with its delivery. Receipts without a raise on record (written before raises were
    audited) are listed as delivered."""
    since = now - timedelta(days=ALERT_DAYS)
    raised = db.execute(
        select(AuditEvent.seq, AuditEvent.details)
        .where(
            AuditEvent.type == EventType.ALERT_RAISED.value,
            AuditEvent.occurred_at >= since,
        )
        .order_by(AuditEvent.seq.desc())
        .limit(ALERT_ROWS)
    ).all()
    # A receipt follows its raise: those after the oldest raise listed, or the newest ones.
    after = raised[-1].seq if len(raised) == ALERT_ROWS else 0
    receipts = db.execute(
        select(AuditEvent.occurred_at, AuditEvent.details)
        .where(
            AuditEvent.type == EventType.ALERT_DELIVERED.value,
            AuditEvent.occurred_at >= since,
            AuditEvent.seq > after,
        )
        .order_by(AuditEvent.seq.desc())
        .limit(2 * ALERT_ROWS)
    ).all()
    delivered: dict[tuple[str, str, tuple[str, ...]], tuple[datetime, dict[str, Any]]] = {}
    for at, text in receipts:
        details = json.loads(text or "{}")
        delivered[_identity(details)] = (at, details)  # the first delivery, read last, wins
    listed: dict[tuple[str, str, tuple[str, ...]], RaisedAlert] = {}
    for _, text in reversed(raised):
        details = json.loads(text or "{}")
        key = _identity(details)
        receipt = delivered.pop(key, None)
        if key not in listed:
            listed[key] = _alert(details, receipt[0] if receipt else None)
    for at, details in delivered.values():
        listed[_identity(details)] = _alert(details, at)
    newest_first = sorted(
        listed.values(),
        key=lambda a: a.raised_at or a.delivered_at or since,
        reverse=True,
    )
    return newest_first[:ALERT_ROWS]


def _alert(details: dict[str, Any], delivered_at: datetime | None) -> RaisedAlert:
    return RaisedAlert(
        rule=str(details.get("rule", "?")),
        severity=str(details.get("severity", "?")),
        title=str(details.get("title", "")),
        raised_at=_when(details.get("raised_at")),
        delivered_at=delivered_at,
        summary=bool(details.get("summary")),
    )


def alert_state(alert: RaisedAlert, pipeline: SinkStatus | None) -> AlertState:
    """Delivered, or waiting: failing while the alert pipeline's last attempt failed."""
    if alert.delivered_at is not None:
        return AlertState.DELIVERED
    if pipeline is not None and pipeline.failures:
        return AlertState.FAILING
    return AlertState.PENDING


def median_seconds(alerts: Sequence[RaisedAlert]) -> float | None:
    """The median time to delivery (the seed's MTTD) of the delivered alerts, None without
    a measured one."""
    delays = [a.seconds for a in alerts if a.seconds is not None]
    return statistics.median(delays) if delays else None
