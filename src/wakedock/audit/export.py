"""Reading the audit trail: filters, cursor pages, and JSON-lines / CSV export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import EventType, Severity
from wakedock.audit.models import AuditEvent

EXPORT_FORMATS = ("jsonl", "csv")
FIELDS = (
    "id", "seq", "occurred_at", "type", "severity", "outcome", "actor", "ip", "user_agent",
    "target", "request_id", "details", "hash",
)  # fmt: skip
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditRecord:
    id: int
    seq: int
    occurred_at: str
    type: str
    severity: str
    outcome: str
    actor: str | None
    ip: str | None
    user_agent: str | None
    target: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, row: AuditEvent) -> AuditRecord:
        at = row.occurred_at if row.occurred_at.tzinfo else row.occurred_at.replace(tzinfo=UTC)
        return cls(
            id=row.id,
            seq=row.seq,
            occurred_at=at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            type=row.type,
            severity=row.severity,
            outcome=row.outcome,
            actor=row.actor,
            ip=row.ip,
            user_agent=row.user_agent,
            target=row.target,
            request_id=row.request_id,
            details=json.loads(row.details or "{}"),
            hash=row.hash,
        )


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 time like 2026-11-28T10:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AuditFilter:
    type: str | None = None
    severity: str | None = None
    actor: str | None = None
    ip: str | None = None
    target: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # The newest seq included (the console's view as it was drawn: its export holds no later
    # event, not even the export's own audit record).
    through: int | None = None

    @classmethod
    def parse(cls, **raw: str | None) -> AuditFilter:
        """Validated filters; ValueError naming the bad one."""
        if raw.get("type") is not None and raw["type"] not in set(EventType):
            raise ValueError("type: not a known event type")
        if raw.get("severity") is not None and raw["severity"] not in set(Severity):
            raise ValueError("severity: one of " + ", ".join(Severity))
        return cls(
            type=raw.get("type"),
            severity=raw.get("severity"),
            actor=raw.get("actor"),
            ip=raw.get("ip"),
            target=raw.get("target"),
            request_id=raw.get("request_id"),
            since=_time(raw.get("since"), "since"),
            until=_time(raw.get("until"), "until"),
        )

    def apply(self, query: Select[Any]) -> Select[Any]:
        # Bound parameters only: filter values never become SQL.
        for column, value in (
            (AuditEvent.type, self.type),
            (AuditEvent.severity, self.severity),
            (AuditEvent.actor, self.actor),
            (AuditEvent.ip, self.ip),
            (AuditEvent.target, self.target),
            (AuditEvent.request_id, self.request_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.since is not None:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            query = query.where(AuditEvent.occurred_at < self.until)
        if self.through is not None:
            query = query.where(AuditEvent.seq <= self.through)
        return query


def page_events(
    factory: sessionmaker[Session],
    selection: AuditFilter,
    *,
    limit: int,
    after: int | None = None,
    newest_first: bool = False,
) -> list[AuditRecord]:
    """One page in seq order; `after` is the cursor (the last seq of the previous page)."""
    query = selection.apply(select(AuditEvent))
    if after is not None:
        query = query.where(AuditEvent.seq < after if newest_first else AuditEvent.seq > after)
    order = AuditEvent.seq.desc() if newest_first else AuditEvent.seq
    with factory() as db:
        rows = db.scalars(query.order_by(order).limit(limit)).all()
        return [AuditRecord.of(row) for row in rows]


def _cell(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value or "")
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_events(
    events: Iterable[AuditRecord], fmt: str, out: TextIO, *, header: bool = True
) -> None:
    """Write `events` as JSON lines or CSV (formula-looking cells defused with a quote)."""
    if fmt == "jsonl":
        for event in events:
            out.write(json.dumps(asdict(event), ensure_ascii=True, sort_keys=True) + "\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(FIELDS)
    for event in events:
        record = asdict(event)
        writer.writerow([_cell(record[name]) for name in FIELDS])
