"""The Secrets page's forms and how the page renders: a new version's fields read into the API's
own request body (`SecretWrite`, so the same rules on key names and value sizes), the folder
crumbs, and the page itself.

A value typed into a form is never written back into a page, a message or an address: a form
that was refused comes back with its value fields empty, and its problems are fixed texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from wakedock.errors import InvalidInput
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.secrets.base import SEGMENT
from wakedock.secrets.schemas import MAX_VALUE, SecretWrite
from wakedock.secrets.service import SecretInfo
from wakedock.web.templating import render_page

SECRETS_PATH = "/admin/secrets"
# Field names of a new version: `value.<key>` for each key the secret has, and one new key.
VALUE_PREFIX = "value."
NEW_KEY = "new_key"
NEW_VALUE = "new_value"
# The API's limit (100 keys of at most 64 KiB) plus the form's own few fields; the body limit
# of the admin host (http.max_body_bytes) bounds the whole post anyway.
_MAX_FIELDS = 100 + 8

BAD_KEY = "A key name is letters, digits and _ . - only."
NO_VALUE = "Enter a value for every key (the new version holds exactly these keys)."
TOO_LONG = f"A value is at most {MAX_VALUE} characters."
BAD_PATH = "A secret's name is segments of letters, digits and _ . - separated by /."


async def secret_form(request: Request) -> dict[str, str]:
    """The URL-encoded fields of a Secrets form, whole: unlike the sign-in forms' parser,
    values are never cut short (a secret cut short would be written as another secret)."""
    raw = await request.body()
    try:
        parsed = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the form could not be parsed") from None
    return {key: values[-1] for key, values in parsed.items()}


def secret_path(fields: Mapping[str, str]) -> str:
    """The secret a form is about: `path`, or for a new secret `folder` and `name` joined."""
    if "name" in fields:
        folder = fields.get("folder", "").strip("/")
        name = fields["name"].strip().strip("/")
        return f"{folder}/{name}" if folder else name
    return fields.get("path", "").strip("/")


def valid_path(path: str) -> bool:
    """Segments of letters, digits and _ . - (the store checks it again, as for the API)."""
    segments = path.split("/")
    return bool(path) and all(SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)


@dataclass(frozen=True)
class NewVersion:
    """A new version as the API's body, or what is wrong with the form (fixed texts)."""

    body: SecretWrite | None
    problems: list[str] = field(default_factory=list)


def new_version(fields: Mapping[str, str]) -> NewVersion:
    """The keys and values of a new version from its form, checked by the API's own model."""
    values = {
        k.removeprefix(VALUE_PREFIX): v for k, v in fields.items() if k.startswith(VALUE_PREFIX)
    }
    new_key = fields.get(NEW_KEY, "").strip()
    if new_key or fields.get(NEW_VALUE):
        values[new_key] = fields.get(NEW_VALUE, "")
    problems = []
    if not values or any(not v for v in values.values()):
        problems.append(NO_VALUE)
    if any(not SEGMENT.fullmatch(k) or k in (".", "..") for k in values):
        problems.append(BAD_KEY)
    if any(len(v) > MAX_VALUE or "\x00" in v for v in values.values()):
        problems.append(TOO_LONG)
    cas = fields.get("cas", "")
    if problems:
        return NewVersion(None, problems)
    try:
        body = SecretWrite(values=values, cas=int(cas) if cas.isdigit() else None)
    except ValidationError:
        # The model's messages may quote the input: only a fixed text is shown.
        return NewVersion(None, [BAD_KEY])
    return NewVersion(body)


def crumbs(path: str) -> list[tuple[str, str]]:
    """(name, address) of each folder above `path`, from the top: where the page links back."""
    trail = [("All secrets", SECRETS_PATH)]
    parts = [p for p in path.split("/") if p]
    for depth in range(1, len(parts)):
        trail.append((parts[depth - 1], address("/".join(parts[:depth]))))
    return trail


def address(path: str, **extra: str | int) -> str:
    """The page of the folder or secret `path` (no value ever goes in here)."""
    query = {"path": path, **extra} if path else dict(extra)
    return f"{SECRETS_PATH}?{urlencode(query)}" if query else SECRETS_PATH


@dataclass
class SecretsView:
    """What the Secrets page shows; `revealed` only on the answer to a reveal with a code."""

    path: str
    info: SecretInfo | None = None
    unavailable: str = ""
    revealed: dict[str, str] | None = None
    notice: str = ""
    problems: dict[str, list[str]] = field(default_factory=dict)


def secrets_page(
    view: SecretsView, user: str, role: str, csrf_token: str, status: int = 200
) -> HTMLResponse:
    """The page (never stored by the browser: `Cache-Control: no-store`, as every page)."""
    return render_page(
        "console_secrets.html",
        status,
        title="Secrets",
        section="admin",
        user=user,
        console=True,
        csrf_token=csrf_token,
        view=view,
        crumbs=crumbs(view.path),
        address=address,
        may_write=has_permission(role, Permission.SECRETS_WRITE),
        may_reveal=has_permission(role, Permission.SECRETS_REVEAL),
        value_prefix=VALUE_PREFIX,
    )
