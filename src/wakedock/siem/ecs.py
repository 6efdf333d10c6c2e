"""Audit events in Elastic Common Schema field names (ECS 8), for every SIEM sink."""

from __future__ import annotations

from typing import Any

from wakedock.audit.export import AuditRecord

# ECS event.severity is numeric; higher is worse.
SEVERITY_NUMBER = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_OUTCOME = {"success": "success", "failure": "failure", "denied": "failure"}
_CATEGORY = {
    "login": ["authentication"],
    "mfa": ["authentication"],
    "token": ["authentication"],
    "logout": ["authentication"],
    "session": ["session"],
    "password": ["iam"],
    "user": ["iam"],
    "role": ["iam"],
    "service": ["process"],
    "policy": ["configuration"],
    "path": ["file"],
    "file": ["file"],
    "secret": ["configuration"],
}


def to_ecs(record: AuditRecord) -> dict[str, Any]:
    """One event as an ECS document; `event.id` is the stable id receivers de-duplicate on."""
    prefix = record.type.split("_", 1)[0]
    document: dict[str, Any] = {
        "@timestamp": record.occurred_at,
        "event": {
            "id": f"wakedock-{record.seq}",
            "sequence": record.seq,
            "kind": "event",
            "action": record.type,
            "outcome": _OUTCOME.get(record.outcome, "unknown"),
            "severity": SEVERITY_NUMBER.get(record.severity, 0),
            "category": _CATEGORY.get(prefix, ["other"]),
            "hash": record.hash,
        },
        "log": {"level": record.severity, "logger": "wakedock.audit"},
        "wakedock": {"target": record.target, "details": record.details},
        "observer": {"product": "WakeDock", "type": "gateway"},
    }
    if record.actor is not None:
        document["user"] = {"name": record.actor}
    if record.ip is not None:
        document["source"] = {"ip": record.ip}
    if record.user_agent:
        document["user_agent"] = {"original": record.user_agent}
    if record.request_id:
        document["http"] = {"request": {"id": record.request_id}}
    return document
