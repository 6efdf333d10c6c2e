"""The sign-in hand-off to a protected service host (S7.7), on the admin host.

`GET /auth/proxy?next=<service URL>` is where a service host sends a visitor without access:
with a live session it issues a single-use ticket for that host (proxy/access.py) and sends the
browser back; otherwise it sends it to `/login` (or to the enrolment page) first. Only URLs of
known service hosts are accepted (no open redirect).

With `step_up=1` the service host's zero-trust decision asked this session for a fresh code
(proxy/trust.py): the page asks for it (`POST`, CSRF-checked, MFA's own step-up: rate-limited
and audited `mfa_step_up`), then issues the ticket.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.deps import CsrfGuardDep, SessionStoreDep
from wakedock.auth.forms import BrowserSession
from wakedock.mfa.code_form import code_page, code_session, take_code
from wakedock.mfa.deps import MfaServiceDep
from wakedock.proxy.access import HANDOFF_PATH
from wakedock.proxy.deps import ProxyAccessDep, ServiceDirectoryDep
from wakedock.proxy.directory import normalise_host
from wakedock.rbac.dependencies import public
from wakedock.web.templating import message_page, render_page

UNKNOWN = "This address is not a WakeDock service."

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get(HANDOFF_PATH, dependencies=[Depends(public)])
async def proxy_handoff(
    request: Request,
    directory: ServiceDirectoryDep,
    access: ProxyAccessDep,
    mfa: MfaServiceDep,
    sessions: SessionStoreDep,
    csrf: CsrfGuardDep,
    next: str = "",
    step_up: str = "",
) -> Response:
    """Send a signed-in browser back to a protected service host with a one-time ticket
    (with `step_up=1`, once it has given a fresh code)."""
    target = _service_url(next, directory)
    if target is None:
        return message_page("Unknown service", UNKNOWN, 400)
    code = step_up == "1"
    here = _here(next, step_up=code)
    found = await code_session(request, sessions, mfa, here, for_code=code)
    if isinstance(found, Response):
        return found
    if code:
        return code_page(found, csrf, _here(next), host=target[1])
    return _back(access, found, target)


@router.post(HANDOFF_PATH, dependencies=[Depends(public)])
async def proxy_handoff_code(
    request: Request,
    directory: ServiceDirectoryDep,
    mfa: MfaServiceDep,
    sessions: SessionStoreDep,
    csrf: CsrfGuardDep,
    next: str = "",
) -> Response:
    """The fresh code the service host's access policy asked for: MFA's own step-up, then
    back to the service with a ticket."""
    found = await code_session(request, sessions, mfa, _here(next, step_up=True))
    if isinstance(found, Response):
        return found
    target = _service_url(next, directory)
    if target is None:
        return message_page("Unknown service", UNKNOWN, 400)

    def again(message: str, status: int) -> Response:
        action = _here(next)
        return code_page(found, csrf, action, host=target[1], message=message, status=status)

    refused = await take_code(request, csrf, mfa, found, again)
    if refused is not None:
        return refused
    # Browsers apply this page's CSP `form-action 'self'` to every redirect of the post: the
    # way back to the service host is a page that moves on by itself (as the sign-in's), to
    # the hand-off, which gives the ticket.
    return render_page("continue.html", title="Verified", next=_here(next))


def _here(next: str, *, step_up: bool = False) -> str:
    query = {"next": next, **({"step_up": "1"} if step_up else {})}
    return f"{HANDOFF_PATH}?" + urlencode(query)


def _service_url(next: str, directory: ServiceDirectoryDep) -> tuple[SplitResult, str] | None:
    """The service URL `next` and its host, when it is one of WakeDock's services."""
    try:
        parts = urlsplit(next)
    except ValueError:  # e.g. an unbalanced "[" read as an IPv6 host
        return None
    host = normalise_host(parts.netloc)
    if parts.scheme not in ("http", "https") or host is None or not directory.knows(host):
        return None
    return parts, host


def _back(
    access: ProxyAccessDep, session: BrowserSession, target: tuple[SplitResult, str]
) -> Response:
    parts, host = target
    ticket = access.issue_ticket(session.principal, host)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    query = urlencode({"ticket": ticket, "next": path})
    return RedirectResponse(f"{parts.scheme}://{parts.netloc}/_wakedock/auth?{query}", 303)
