"""`/admin/settings`: the effective configuration, read-only (`settings:read`).

The same data as `GET /api/v1/settings` and `wakedock config check`, from the same service
(`EffectiveSettings.read`: the read audited as `data_access`): every setting in force, and for
each secret only where it comes from (a file, a variable, a reference...), never its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from wakedock.console.access import console_session
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.settings.deps import EffectiveSettingsDep
from wakedock.web.deps import context_of
from wakedock.web.templating import render_page

router = APIRouter(tags=["pages"], include_in_schema=False)
SETTINGS_PATH = "/admin/settings"
GENERAL = "General"


@dataclass(frozen=True)
class Row:
    """One setting as the page shows it: its name, and its value or, for a secret, its
    source (`secret` says which)."""

    name: str
    shown: str
    secret: bool = False


def _secret(entry: dict[str, Any]) -> str:
    """A secret's description: whether it is set, where from; never its value."""
    if not entry.get("set"):
        return "not set"
    parts = [str(entry.get("source", "unknown"))]
    if entry.get("from"):
        parts.append(f"from {entry['from']}")
    if entry.get("scheme"):
        parts.insert(0, f"{entry['scheme']} URL")
    return ", ".join(parts)


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get("secret") is True


def row(name: str, value: Any) -> Row:
    """How one setting of the API's answer reads on the page."""
    if _is_secret(value):
        return Row(name, _secret(value), secret=True)
    if isinstance(value, list) and value and all(_is_secret(item) for item in value):
        return Row(name, "; ".join(_secret(item) for item in value), secret=True)
    if value is None:
        return Row(name, "not set")
    if isinstance(value, bool):
        return Row(name, "yes" if value else "no")
    if isinstance(value, list):
        return Row(name, ", ".join(map(str, value)) if value else "none")
    if isinstance(value, dict):
        return Row(name, json.dumps(value, sort_keys=True) if value else "none")
    return Row(name, str(value))


def sections(effective: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    """The settings by section, in the configuration's own order; the top-level values first,
    as "General"."""
    general = [row(k, v) for k, v in effective.items() if not isinstance(v, dict)]
    grouped = [
        (name, [row(k, v) for k, v in part.items()])
        for name, part in effective.items()
        if isinstance(part, dict)
    ]
    return ([(GENERAL, general)] if general else []) + grouped


@router.get(SETTINGS_PATH, dependencies=[Depends(public)])
async def settings_page(
    request: Request, settings: EffectiveSettingsDep, pages: Pages = PagesDep
) -> Response:
    """Every setting in force; each secret only as its source."""
    found = await console_session(request, pages, SETTINGS_PATH, Permission.SETTINGS_READ)
    if isinstance(found, Response):
        return found
    effective = await run_in_threadpool(settings.read, context_of(request))
    provider = effective.get("secrets", {}).get("provider", "unknown")
    return render_page(
        "console_settings.html",
        title="Settings",
        section="admin",
        user=found.principal.username,
        console=True,
        csrf_token=found.csrf_token(pages.csrf),
        environment=effective.get("environment", "unknown"),
        provider=provider,
        sections=sections(effective),
    )
