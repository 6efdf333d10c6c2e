"""Route guards. Every route declares `Depends(requires(P))` or `Depends(public)`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor
from wakedock.auth.dependencies import current_principal
from wakedock.auth.sessions import Principal
from wakedock.auth.zerotrust import RequestWeigher
from wakedock.context import RequestContext
from wakedock.errors import PermissionDenied
from wakedock.rbac.enrolment import EnrolmentPolicy
from wakedock.rbac.errors import EnrolmentRequired
from wakedock.rbac.permissions import Permission, Role
from wakedock.rbac.roles import ROLE_PERMISSIONS, has_permission
from wakedock.web.deps import context_of, request_headers
from wakedock.web.provided import provider
from wakedock.zerotrust.base import Purpose

# What only admins may do is weighed by the stricter `admin` profile (docs/zerotrust.md).
ADMIN_ONLY = frozenset(Permission) - ROLE_PERMISSIONS[Role.OPERATOR]


@dataclass(frozen=True)
class GuardContext:
    """What a route guard consults, as one dependency: the MFA enrolment policy, the audit
    door for its refusals, and the zero-trust weigher of authenticated requests."""

    enrolment: EnrolmentPolicy
    auditor: Auditor
    zero_trust: RequestWeigher | None = None


guard_context = provider(GuardContext)
GuardContextDep = Annotated[GuardContext, Depends(guard_context)]


async def public() -> None:
    """Marks a route as deliberately open to anyone."""


class Requires:
    """A dependency that admits only principals holding `permission`.

    A principal whose role must use MFA but has not enrolled yet passes only the guards marked
    `during_enrolment` (enrolment routes, `me`, logout): 403 `mfa_enrollment_required` elsewhere.
    """

    def __init__(
        self, permission: Permission, *, during_enrolment: bool = False, step_up: bool = False
    ) -> None:
        self.permission = permission
        self.during_enrolment = during_enrolment
        # A session the zero-trust engine steps up must still reach what answers it (the MFA
        # step-up), see who it is, enrol, and sign out: a deny is enforced there, not a step-up.
        self.enforce_step_up = not (during_enrolment or step_up)

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
        weigher = guard.zero_trust
        if weigher is not None and weigher.enabled:
            await self._weigh(request, weigher, principal)
        return principal

    async def _weigh(self, request: Request, weigher: RequestWeigher, principal: Principal) -> None:
        """The zero-trust decision on this session's request: from memory when its session,
        address, user agent and purpose were weighed lately, else on a worker thread."""
        purpose = Purpose.ADMIN if self.permission in ADMIN_ONLY else Purpose.REQUEST
        context = context_of(request)
        step_up = self.enforce_step_up
        if weigher.enforce_cached(principal, context, purpose, step_up=step_up):
            return
        headers = request_headers(request)
        await run_in_threadpool(
            weigher.weigh, principal, context, headers, purpose, step_up=step_up
        )


@dataclass(frozen=True)
class SensitiveCheck:
    """The zero-trust decision on an action that needs a fresh MFA proof anyway (granting a
    role, revealing a secret), by its stricter profile (`grant_role`, `reveal_secret`). Only a
    deny is enforced: the fresh code the action demands is its step-up. Blocking (a worker
    thread): call it after the proof, before the action."""

    weigher: RequestWeigher | None
    headers: Mapping[str, str]

    def __call__(self, principal: Principal, context: RequestContext, purpose: Purpose) -> None:
        if self.weigher is None or not self.weigher.enabled:
            return
        self.weigher.weigh(principal, context, self.headers, purpose, step_up=False)


async def sensitive_check(request: Request, guard: GuardContextDep) -> SensitiveCheck:
    return SensitiveCheck(guard.zero_trust, request_headers(request))


SensitiveCheckDep = Annotated[SensitiveCheck, Depends(sensitive_check)]


async def _deny(auditor: Auditor, request: Request, details: dict[str, str]) -> None:
    denied = Event(
        EventType.FORBIDDEN_ACCESS, Outcome.DENIED, target=request.url.path, details=details
    )
    await run_in_threadpool(auditor.record, denied, context_of(request))


_guards: dict[tuple[Permission, bool, bool], Requires] = {}


def requires(
    permission: Permission, *, during_enrolment: bool = False, step_up: bool = False
) -> Requires:
    """The (shared) guard for `permission`; `during_enrolment` routes stay open to a user
    who must still enrol MFA; `step_up` marks the route that answers a step-up."""
    key = (permission, during_enrolment, step_up)
    return _guards.setdefault(
        key, Requires(permission, during_enrolment=during_enrolment, step_up=step_up)
    )
