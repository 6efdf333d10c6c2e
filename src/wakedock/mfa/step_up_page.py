"""The fresh code a page asks for (docs/zerotrust.md, "On requests"): a page the zero-trust
engine stepped up sends the browser here (`auth/forms.py`, `FreshCodeOnPage`), and back to the
page once the code is given.

`GET /mfa/step-up?next=<local path>` shows the form (`mfa/code_form.py`); `POST` (this
server's origin and the session's CSRF token) checks the code with MFA's own step-up, then
redirects to `next` on this host.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.deps import CsrfGuardDep, SessionStoreDep
from wakedock.auth.forms import STEP_UP_PATH
from wakedock.mfa.code_form import code_page, code_session, take_code
from wakedock.mfa.deps import MfaServiceDep
from wakedock.rbac.dependencies import public
from wakedock.web.redirects import local_path

router = APIRouter(tags=["pages"], include_in_schema=False)


def _here(target: str) -> str:
    return f"{STEP_UP_PATH}?" + urlencode({"next": target})


@router.get(STEP_UP_PATH, dependencies=[Depends(public)])
async def step_up_page(
    request: Request,
    sessions: SessionStoreDep,
    mfa: MfaServiceDep,
    csrf: CsrfGuardDep,
    next: str = "/",
) -> Response:
    """The code form, for a signed-in browser."""
    here = _here(local_path(next))
    found = await code_session(request, sessions, mfa, here)
    if isinstance(found, Response):
        return found
    return code_page(found, csrf, here)


@router.post(STEP_UP_PATH, dependencies=[Depends(public)])
async def give_code(
    request: Request,
    sessions: SessionStoreDep,
    mfa: MfaServiceDep,
    csrf: CsrfGuardDep,
    next: str = "/",
) -> Response:
    """The fresh code: MFA's own step-up, then back to the page that asked for it."""
    target = local_path(next)
    here = _here(target)
    found = await code_session(request, sessions, mfa, here)
    if isinstance(found, Response):
        return found

    def again(message: str, status: int) -> Response:
        return code_page(found, csrf, here, message=message, status=status)

    refused = await take_code(request, csrf, mfa, found, again)
    return refused or RedirectResponse(target, status_code=303)
