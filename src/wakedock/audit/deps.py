"""What audit handlers and guards ask for (see web/provided.py), and the audit trail's filter
as query parameters (the API's and the admin console's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.checks import ChainChecks
from wakedock.audit.export import AuditFilter
from wakedock.audit.service import Auditor
from wakedock.errors import InvalidInput
from wakedock.web.provided import provider

auditor = provider(Auditor)
AuditorDep = Annotated[Auditor, Depends(auditor)]
session_factory = provider(sessionmaker)
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(session_factory)]
chain_checks = provider(ChainChecks)
ChainChecksDep = Annotated[ChainChecks, Depends(chain_checks)]

_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
FILTER_FIELDS = ("type", "severity", "actor", "ip", "target", "request_id", "since", "until")


def filter_fields(
    type: str | None = Query(default=None, max_length=64),
    severity: str | None = Query(default=None, max_length=16),
    actor: str | None = Query(default=None, max_length=128, pattern=_NO_CONTROL),
    ip: str | None = Query(default=None, max_length=45, pattern=_NO_CONTROL),
    target: str | None = Query(default=None, max_length=256, pattern=_NO_CONTROL),
    request_id: str | None = Query(
        default=None,
        max_length=64,
        pattern=_NO_CONTROL,
        description="The reference a refusal shows (its X-Request-Id): why it was refused.",
    ),
    since: str | None = Query(default=None, max_length=40),
    until: str | None = Query(default=None, max_length=40),
) -> dict[str, str | None]:
    """The filter's fields as sent, each bounded in length (not yet checked for meaning)."""
    return {
        "type": type,
        "severity": severity,
        "actor": actor,
        "ip": ip,
        "target": target,
        "request_id": request_id,
        "since": since,
        "until": until,
    }


def audit_filter(raw: dict[str, str | None] = Depends(filter_fields)) -> AuditFilter:
    """The validated filter; a bad field is a 400 naming it."""
    try:
        return AuditFilter.parse(**raw)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
