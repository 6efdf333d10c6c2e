"""`/admin/secrets`: the services' secrets in Vault/OpenBao, as the secrets API serves them:
folders, key names and versions (`secrets:read`), a new version (`secrets:write`), and a value
revealed after a fresh code from the admin's app (`secrets:reveal`).

Every read and change is one call to the API's `SecretStore` (so the API's audit events:
`secret_access`, `secret_write`, `secret_reveal`), and the code is checked by the API's step-up
(`MfaService.step_up`: replay-proof, under the MFA budgets, audited `mfa_step_up` or
`mfa_failure`). A revealed value is only ever in the answer to that post: never in an address,
a redirect, a log line, or a page the browser keeps (`Cache-Control: no-store`); reloading the
page posts the spent code again, which is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.forms import BrowserSession, refused_page, require_form_csrf
from wakedock.auth.hashing import run_hashing
from wakedock.console.access import console_session
from wakedock.console.secret_forms import (
    BAD_PATH,
    SECRETS_PATH,
    SecretsView,
    address,
    new_version,
    secret_form,
    secret_path,
    secrets_page,
    valid_path,
)
from wakedock.context import RequestContext
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.errors import Conflict, CsrfFailed, TooManyAttempts, WakeDockError
from wakedock.mfa.deps import MfaServiceDep
from wakedock.mfa.errors import MfaCodeRejected, StepUpRequired
from wakedock.mfa.service import MfaService
from wakedock.rbac.dependencies import SensitiveCheck, SensitiveCheckDep, public
from wakedock.rbac.permissions import Permission
from wakedock.secrets.base import SecretNotFound
from wakedock.secrets.deps import SecretStoreDep
from wakedock.secrets.service import SecretsReadOnly, SecretStore
from wakedock.web.deps import context_of
from wakedock.web.templating import message_page
from wakedock.zerotrust.base import Purpose

router = APIRouter(tags=["pages"], include_in_schema=False)

NO_CODE = "Enter the code your app shows now: revealing a value needs a fresh code."
CODE_REJECTED = "That code is not valid or was already used. Enter the next code of your app."
TOO_MANY = "Too many attempts. Wait a few minutes and try again."
CHANGED = "The secret changed since this page was shown: nothing was written. Check it and retry."


@dataclass(frozen=True)
class _Vault:
    """What the page uses: the dashboard's pages (session, CSRF, guard), the API's secret store
    and its step-up."""

    pages: Pages
    store: SecretStore
    mfa: MfaService
    # The zero-trust `reveal_secret` profile, as the API's reveal weighs it.
    check: SensitiveCheck


async def _vault(
    store: SecretStoreDep, mfa: MfaServiceDep, check: SensitiveCheckDep, pages: Pages = PagesDep
) -> _Vault:
    return _Vault(pages, store, mfa, check)


def _describe(store: SecretStore, path: str, context: RequestContext) -> tuple[SecretsView, int]:
    """The page's view of `path` and its status; no backend to browse is said plainly."""
    view = SecretsView(path=path)
    try:
        view.info = store.describe(path, context)
    except SecretsReadOnly as exc:
        view.unavailable = exc.detail
    except SecretNotFound:
        view.problems["page"] = ["There is no secret or folder of that name."]
        return view, 404
    except WakeDockError as exc:
        view.problems["page"] = [exc.detail]
        return view, exc.status_code
    return view, 200


async def _page(
    d: _Vault,
    request: Request,
    session: BrowserSession,
    path: str,
    *,
    status: int = 200,
    **shown: object,
) -> Response:
    view, found = await run_in_threadpool(_describe, d.store, path, context_of(request))
    for key, value in shown.items():
        setattr(view, key, value)
    principal = session.principal
    csrf = session.csrf_token(d.pages.csrf)
    return secrets_page(view, principal.username, principal.role, csrf, max(status, found))


@router.get(SECRETS_PATH, dependencies=[Depends(public)])
async def secrets_home(
    request: Request,
    path: str = Query(default="", max_length=512),
    written: int = Query(default=0, ge=0, le=2**31),
    d: _Vault = Depends(_vault),
) -> Response:
    """A folder's secrets and folders, or a secret's key names and versions (no value)."""
    path = path.strip("/")
    found = await console_session(
        request, d.pages, address(path) if valid_path(path) else SECRETS_PATH,
        Permission.SECRETS_READ,
    )  # fmt: skip
    if isinstance(found, Response):
        return found
    if path and not valid_path(path):
        return await _page(d, request, found, "", status=400, problems={"page": [BAD_PATH]})
    notice = f"Version {written} written." if written else ""
    return await _page(d, request, found, path, notice=notice)


async def _posted(
    request: Request, d: _Vault, *needs: Permission
) -> tuple[BrowserSession, dict[str, str]] | Response:
    """The form of a signed-in admin allowed `needs`, or the answer: sign in, the 403 page, or
    refused (a post without this origin or the session's CSRF token)."""
    try:
        fields = await secret_form(request)
    except WakeDockError as exc:
        return message_page("Secrets", exc.detail, exc.status_code, SECRETS_PATH, "Secrets")
    found = await console_session(request, d.pages, SECRETS_PATH, Permission.SECRETS_READ, *needs)
    if isinstance(found, Response):
        return found
    try:
        await require_form_csrf(request, d.pages.csrf, context_of(request), found, fields)
    except CsrfFailed:
        return refused_page()
    return found, fields


@router.post(f"{SECRETS_PATH}/write", dependencies=[Depends(public)])
async def write_secret(request: Request, d: _Vault = Depends(_vault)) -> Response:
    """A new version (every key of it), as `PUT /api/v1/secrets/{path}` with check-and-set:
    audited `secret_write` with the key names and the version, never a value."""
    posted = await _posted(request, d, Permission.SECRETS_WRITE)
    if isinstance(posted, Response):
        return posted
    session, fields = posted
    path = secret_path(fields)
    here = fields.get("path", fields.get("folder", "")).strip("/")
    form = "new" if "name" in fields else "write"
    if not valid_path(path):
        return await _page(d, request, session, here, status=400, problems={form: [BAD_PATH]})
    version = new_version(fields)
    if version.body is None:
        return await _page(d, request, session, here, status=400, problems={form: version.problems})
    context = context_of(request)
    body = version.body
    try:
        number = await run_in_threadpool(d.store.write, path, body.values, context, body.cas)
    except SecretsReadOnly as exc:
        return await _page(d, request, session, here, status=409, problems={form: [exc.detail]})
    except Conflict:
        return await _page(d, request, session, here, status=409, problems={form: [CHANGED]})
    except WakeDockError as exc:
        problems = {form: [exc.detail]}
        return await _page(d, request, session, here, status=exc.status_code, problems=problems)
    return RedirectResponse(address(path, written=number), status_code=303)


def _refuse_without_proof(d: _Vault, session: BrowserSession, context: RequestContext) -> None:
    """A reveal without a code is refused by the API's own check, audited the same way (a
    proof from earlier in the session does not count here: the form asks for a fresh one)."""
    try:
        d.mfa.require_fresh(replace(session.principal, mfa_at=None), context)
    except StepUpRequired:
        return


def _reveal(
    d: _Vault, session: BrowserSession, path: str, at: datetime, context: RequestContext
) -> dict[str, str]:
    """The API's reveal: the fresh proof checked, then the values (the page that shows them
    reads the key names and versions, as the API's answer carries them)."""
    proven = replace(session.principal, mfa_at=at)
    d.mfa.require_fresh(proven, context)
    d.check(proven, context, Purpose.REVEAL_SECRET)
    return d.store.reveal(path, context)


@router.post(f"{SECRETS_PATH}/reveal", dependencies=[Depends(public)])
async def reveal_secret(request: Request, d: _Vault = Depends(_vault)) -> Response:
    """The values of a secret's current version, after a fresh code from the admin's app:
    shown in this answer only (audited `mfa_step_up`, then `secret_reveal`)."""
    posted = await _posted(request, d, Permission.SECRETS_REVEAL)
    if isinstance(posted, Response):
        return posted
    session, fields = posted
    path = fields.get("path", "").strip("/")
    if not valid_path(path):
        return await _page(d, request, session, "", status=400, problems={"reveal": [BAD_PATH]})
    context = context_of(request)
    code = fields.get("code", "").strip()[:32]
    if not code:
        await run_in_threadpool(_refuse_without_proof, d, session, context)
        return await _page(d, request, session, path, status=403, problems={"reveal": [NO_CODE]})
    try:
        # A backup code is checked with argon2: on the hashing threads, as sign-in does.
        proof = await run_hashing(request, d.mfa.step_up, session.principal, code, context)
        values = await run_in_threadpool(_reveal, d, session, path, proof.at, context)
    except MfaCodeRejected:
        problems = {"reveal": [CODE_REJECTED]}
        return await _page(d, request, session, path, status=400, problems=problems)
    except TooManyAttempts as exc:
        page = await _page(d, request, session, path, status=429, problems={"reveal": [TOO_MANY]})
        page.headers.update(exc.headers())
        return page
    except WakeDockError as exc:
        problems = {"reveal": [exc.detail]}
        return await _page(d, request, session, path, status=exc.status_code, problems=problems)
    return await _page(d, request, session, path, revealed=values)
