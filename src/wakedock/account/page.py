"""How the Account page renders: its notices (fixed texts chosen by key, never echoed from the
query) and its problems (messages keyed by the field or form they belong to)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import HTMLResponse

from wakedock.account.service import Overview
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.web.templating import render_page

ACCOUNT_PATH = "/account"
TITLE = "Account"

# `/account?done=<key>` after a change (post, redirect, get): the key picks one of these texts,
# so nothing from the address reaches the page.
NOTICES = {
    "session-revoked": "The session was signed out.",
    "others-revoked": "Your other sessions were signed out.",
    "password-changed": "Your password was changed. Your other sessions were signed out.",
    "mfa-disabled": "Two-step verification is off.",
}

# Field (or form) -> what is wrong with it. Keys: the names the template shows them next to.
Problems = Mapping[str, list[str]]

# Where on the page each problem's form is: the summary at the top links there (on a phone the
# form may be far below).
_SECTIONS = {
    "sessions": "sessions-title",
    "backup": "backup-title",
    "backup_code": "backup-title",
    "disable": "disable-title",
    "disable_password": "disable-title",
    "disable_code": "disable-title",
    "password": "password-title",
    "current_password": "password-title",
    "new_password": "password-title",
}

TOO_MANY = "Too many attempts. Wait a few minutes and try again."
CODE_REJECTED = "That code is not valid or was already used. Enter the next code of your app."


def done_path(notice: str) -> str:
    """Where a successful change sends the browser: the page, with its notice."""
    if notice not in NOTICES:
        raise ValueError(f"unknown notice {notice!r}")
    return f"{ACCOUNT_PATH}?done={notice}"


def account_page(
    overview: Overview,
    csrf_token: str,
    *,
    notice: str | None = None,
    problems: Problems | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The Account page; `problems` are shown next to their fields, all at once."""
    return render_page(
        "account.html",
        status,
        title=TITLE,
        section="account",
        user=overview.username,
        console=has_permission(overview.role, Permission.CONSOLE_READ),
        account=overview,
        csrf_token=csrf_token,
        notice=NOTICES.get(notice or "", ""),
        errors=dict(problems or {}),
        problem_anchor=next((_SECTIONS[key] for key in problems or {} if key in _SECTIONS), ""),
    )


def backup_codes_page(codes: list[str], user: str, csrf_token: str) -> HTMLResponse:
    """The new backup codes, shown this once (the page is never stored: no-store)."""
    return render_page(
        "account_codes.html",
        title="New backup codes",
        section="account",
        user=user,
        csrf_token=csrf_token,
        codes=codes,
    )
