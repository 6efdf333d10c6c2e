"""The one table of which role holds which permission."""

from __future__ import annotations

from wakedock.rbac.permissions import Permission as P
from wakedock.rbac.permissions import Role

_SELF = frozenset({P.ACCOUNT_READ, P.ACCOUNT_WRITE})

ROLE_PERMISSIONS: dict[Role, frozenset[P]] = {
    Role.VIEWER: _SELF | {P.SERVICES_READ},
    # Developers write services and their files; which ones (their own) is an object-level check.
    Role.DEVELOPER: _SELF
    | {P.SERVICES_READ, P.SERVICES_WRITE, P.SERVICES_OPERATE, P.FILES_READ, P.FILES_WRITE},
    Role.OPERATOR: _SELF
    | {
        P.SERVICES_READ,
        P.SERVICES_WRITE,
        P.SERVICES_OPERATE,
        P.AUDIT_READ,
        P.METRICS_READ,
        P.SETTINGS_READ,
        P.USERS_READ,
        P.FILES_READ,
        P.FILES_WRITE,
    },
    Role.ADMIN: frozenset(P),
}

# Roles self-registration may hand out: the least privileged only.
SELF_REGISTRATION_ROLE = Role.VIEWER


def permissions_of(role: str) -> frozenset[P]:
    """The permissions of a role name; an unknown role has none."""
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def has_permission(role: str, permission: P) -> bool:
    return permission in permissions_of(role)
