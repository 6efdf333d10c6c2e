"""The users page's changes, made by the same service calls as the API's routes
(users/router.py, mfa/router.py `admin_router`): the same rules, password policy, self- and
last-admin protection, and audit events.

Where the API demands a fresh MFA proof (`MfaService.require_fresh`: role changes, disabling
or enabling, MFA resets, deletion, creating an admin), the form carries a code field. The code
is checked as the API's step-up checks it (`MfaService.step_up`: rate limited, replay-proof,
audited `mfa_step_up` or `mfa_failure`, the session's MFA time refreshed), then the API's own
`require_fresh` guard admits the change. Without a code the guard refuses (audited
`forbidden_access`), even when the session's proof is still fresh: a console form asks every
time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy.orm import Session, sessionmaker

from wakedock.auth.sessions import Principal
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.mfa.errors import StepUpRequired
from wakedock.mfa.service import MfaService
from wakedock.rbac.dependencies import SensitiveCheck
from wakedock.rbac.permissions import Role
from wakedock.users.service import UserService
from wakedock.zerotrust.base import Purpose

CODE_NEEDED = (
    "This change needs a current code from your authenticator app: type it in the code field."
)


@dataclass(frozen=True)
class UserDesk:
    """The changes an admin makes on the users page; each method blocks (threadpool)."""

    users: UserService
    mfa: MfaService
    factory: sessionmaker[Session]
    # The list's "signed in within 30 days" is counted from its now.
    clock: Clock
    # The zero-trust `grant_role` profile, as the API's routes weigh a grant (none: not weighed).
    check: SensitiveCheck | None = None

    def _proven(self, principal: Principal, code: str, context: RequestContext) -> Principal:
        """The principal after a step-up with `code`; the API's `require_fresh` then admits it
        (or refuses, audited). No code: refused as the API refuses a stale proof."""
        code = code.strip()
        if not code:
            try:
                self.mfa.require_fresh(replace(principal, mfa_at=None), context)
            except StepUpRequired:
                raise StepUpRequired(CODE_NEEDED) from None
        proof = self.mfa.step_up(principal, code, context)
        fresh = replace(principal, mfa_at=proof.at)
        self.mfa.require_fresh(fresh, context)
        return fresh

    def _granting(self, principal: Principal, context: RequestContext) -> None:
        if self.check is not None:
            self.check(principal, context, Purpose.GRANT_ROLE)

    def check_password(self, password: str, username: str, email: str | None) -> None:
        """The policy's verdict (PasswordRejected), before any code is spent."""
        self.users.check_password(password, username.strip().lower(), email)

    def create(
        self,
        principal: Principal,
        context: RequestContext,
        *,
        username: str,
        password: str,
        role: Role,
        email: str | None,
        code: str,
    ) -> str:
        """`POST /api/v1/users`: creating an admin needs a fresh proof. The new user's name."""
        if role is Role.ADMIN:
            self._granting(self._proven(principal, code, context), context)
        with transaction(self.factory) as db:
            user = self.users.create(
                db, context, username=username, password=password, role=role, email=email
            )
            return user.username

    def change_role(
        self, principal: Principal, context: RequestContext, user_id: int, role: Role, code: str
    ) -> str:
        """`PATCH /api/v1/users/{id}` with a role (granting admin raises
        `privilege_escalation`). The user's name."""
        self._granting(self._proven(principal, code, context), context)
        with transaction(self.factory) as db:
            user = self.users.get(db, user_id)
            self.users.update(db, context, user, role=role)
            return user.username

    def set_disabled(
        self,
        principal: Principal,
        context: RequestContext,
        user_id: int,
        disabled: bool,
        code: str,
    ) -> str:
        """`PATCH /api/v1/users/{id}` with `disabled` (disabling revokes its sessions)."""
        self._proven(principal, code, context)
        with transaction(self.factory) as db:
            user = self.users.get(db, user_id)
            self.users.update(db, context, user, disabled=disabled)
            return user.username

    def reset_mfa(
        self, principal: Principal, context: RequestContext, user_id: int, code: str
    ) -> str:
        """`DELETE /api/v1/users/{id}/mfa`: the user's MFA cleared, its sessions revoked."""
        self._proven(principal, code, context)
        with transaction(self.factory) as db:
            name = self.users.get(db, user_id).username
            self.mfa.reset(db, context, user_id)
            return name

    def delete(self, principal: Principal, context: RequestContext, user_id: int, code: str) -> str:
        """`DELETE /api/v1/users/{id}`: not oneself, not the last admin."""
        fresh = self._proven(principal, code, context)
        with transaction(self.factory) as db:
            user = self.users.get(db, user_id)
            name = user.username
            self.users.delete(db, context, user, actor_id=fresh.user_id)
            return name
