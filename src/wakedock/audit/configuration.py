"""Configuration changes (S8.1): at start-up, each settings section's fingerprint is compared
with the one recorded last; a difference is a `configuration_change` event naming the sections.

Secret values are masked by pydantic (`**********`) before hashing, so a rotated secret is not
seen here: secret reads and rotations are their own events (issue #7).
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType
from wakedock.audit.models import AuditEvent
from wakedock.audit.service import record_event
from wakedock.clock import Clock
from wakedock.config import Settings
from wakedock.context import RequestContext
from wakedock.db import transaction


def fingerprints(settings: Settings) -> dict[str, str]:
    dumped = json.loads(settings.model_dump_json())
    return {
        section: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
        for section, value in sorted(dumped.items())
    }


def record_configuration(
    factory: sessionmaker[Session], clock: Clock, settings: Settings, context: RequestContext
) -> list[str]:
    """Record the configuration if it differs from the last one recorded; the changed sections."""
    current = fingerprints(settings)
    with transaction(factory) as db:
        last = db.scalar(
            select(AuditEvent.details)
            .where(AuditEvent.type == EventType.CONFIGURATION_CHANGE.value)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        previous: dict[str, str] = json.loads(last).get("sections", {}) if last else {}
        changed = sorted(
            k for k in current.keys() | previous.keys() if current.get(k) != previous.get(k)
        )
        if changed:
            event = Event(
                EventType.CONFIGURATION_CHANGE,
                target="configuration",
                details={"sections": current, "changed": changed, "first": not previous},
            )
            record_event(db, event, context, at=clock.now())
        return changed
