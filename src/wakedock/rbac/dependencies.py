"""Route guards. Every route declares `Depends(requires(P))` or `Depends(public)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor
from wakedock.auth.dependencies import current_principal
from wakedock.auth.sessions import Principal
from wakedock.errors import PermissionDenied
from wakedock.rbac.enrolment import EnrolmentPolicy
from wakedock.rbac.errors import EnrolmentRequired
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.web.deps import context_of
from wakedock.web.provided import provider


@dataclass(frozen=True)
class GuardContext:
    """What a route guard consults, as one dependency: the MFA enrolment policy, and the audit
    door for its refusals."""

    enrolment: EnrolmentPolicy
    auditor: Auditor


guard_context = provider(GuardContext)
GuardContextDep = Annotated[GuardContext, Depends(guard_context)]


async def public() -> None:
    """Marks a route as deliberately open to anyone."""


class Requires:
    """A dependency that admits only principals holding `permission`.

    A principal whose role must use MFA but has not enrolled yet passes only the guards marked
    `during_enrolment` (enrolment routes, `me`, logout): 403 `mfa_enrollment_required` elsewhere.
    """

    def __init__(self, permission: Permission, *, during_enrolment: bool = False) -> None:
        self.permission = permission
        self.during_enrolment = during_enrolment

    async def __call__(
        self,
        request: Request,
        guard: GuardContextDep,
        principal: Principal = Depends(current_principal),
    ) -> Principal:
        if not has_permission(principal.role, self.permission):
            details = {"method": request.method, "permission": self.permission.value}
            await _deny(guard.auditor, request, details)
            raise PermissionDenied(f"missing permission {self.permission.value}")
        if not self.during_enrolment and guard.enrolment.enrolment_pending(principal):
            details = {"method": request.method, "reason": "mfa enrolment required"}
            await _deny(guard.auditor, request, details)
            raise EnrolmentRequired(
                "your role requires MFA: enrol first (POST /api/v1/auth/mfa/setup)"
            )
        return principal


async def _deny(auditor: Auditor, request: Request, details: dict[str, str]) -> None:
    denied = Event(
        EventType.FORBIDDEN_ACCESS, Outcome.DENIED, target=request.url.path, details=details
    )
    await run_in_threadpool(auditor.record, denied, context_of(request))


_guards: dict[tuple[Permission, bool], Requires] = {}


def requires(permission: Permission, *, during_enrolment: bool = False) -> Requires:
    """The (shared) guard for `permission`; `during_enrolment` routes stay open to a user
    who must still enrol MFA."""
    key = (permission, during_enrolment)
    return _guards.setdefault(key, Requires(permission, during_enrolment=during_enrolment))
