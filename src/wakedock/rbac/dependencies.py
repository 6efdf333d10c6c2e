"""Route guards. Every route declares `Depends(requires(P))` or `Depends(public)`."""

from __future__ import annotations

from fastapi import Depends, Request

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.auth.dependencies import current_principal
from wakedock.auth.sessions import Principal
from wakedock.components import Components
from wakedock.errors import PermissionDenied
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.web.deps import components, request_context


def public() -> None:
    """Marks a route as deliberately open to anyone."""


class Requires:
    """A dependency that admits only principals holding `permission`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __call__(
        self,
        request: Request,
        principal: Principal = Depends(current_principal),
        c: Components = Depends(components),
    ) -> Principal:
        if not has_permission(principal.role, self.permission):
            c.auth.audit(
                Event(
                    EventType.FORBIDDEN_ACCESS,
                    Outcome.DENIED,
                    target=request.url.path,
                    details={"method": request.method, "permission": self.permission.value},
                ),
                request_context(request),
            )
            raise PermissionDenied(f"missing permission {self.permission.value}")
        return principal


_guards: dict[Permission, Requires] = {}


def requires(permission: Permission) -> Requires:
    """The (shared) guard for `permission`."""
    return _guards.setdefault(permission, Requires(permission))
