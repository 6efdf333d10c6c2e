"""`/admin`: the console's home, a card per page the admin may open."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from wakedock.console.access import CONSOLE_PATH, console_session
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.web.templating import render_page

router = APIRouter(tags=["pages"], include_in_schema=False)


@dataclass(frozen=True)
class Section:
    """One console page, as its card on the home page shows it."""

    path: str
    title: str
    summary: str
    needs: Permission


SECTIONS = (
    Section(
        "/admin/users",
        "Users and roles",
        "Accounts, their roles and MFA; the role and permission matrix.",
        Permission.USERS_READ,
    ),
    Section(
        "/admin/sessions",
        "Sessions",
        "Everyone's active sessions; revoke one or all of a user's.",
        Permission.SESSIONS_READ,
    ),
    Section(
        "/admin/audit",
        "Audit trail",
        "Filter, follow and export events; verify the chain.",
        Permission.AUDIT_READ,
    ),
    Section(
        "/admin/posture",
        "Security posture",
        "MFA adoption, sign-in failures, alerts, SIEM, CIS checks, certificate.",
        Permission.SECURITY_READ,
    ),
    Section(
        "/admin/secrets",
        "Secrets",
        "Services' secrets in Vault or OpenBao: versions, new values, reveal.",
        Permission.SECRETS_READ,
    ),
    Section(
        "/admin/settings",
        "Settings",
        "The effective configuration and where each secret comes from.",
        Permission.SETTINGS_READ,
    ),
)


@router.get(CONSOLE_PATH, dependencies=[Depends(public)])
async def console_home(request: Request, pages: Pages = PagesDep) -> Response:
    found = await console_session(request, pages, CONSOLE_PATH)
    if isinstance(found, Response):
        return found
    role = found.principal.role
    return render_page(
        "console_index.html",
        title="Admin",
        section="admin",
        user=found.principal.username,
        console=True,
        csrf_token=found.csrf_token(pages.csrf),
        sections=[s for s in SECTIONS if has_permission(role, s.needs)],
    )
