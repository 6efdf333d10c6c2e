"""The sign-in hand-off to a protected service host (S7.7), on the admin host.

`GET /auth/proxy?next=<service URL>` is where a service host sends a visitor without access:
with a live session it issues a single-use ticket for that host (proxy/access.py) and sends the
browser back; otherwise it sends it to `/login` (or to the enrolment page) first. Only URLs of
known service hosts are accepted (no open redirect).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.deps import SessionStoreDep
from wakedock.auth.forms import browser_session, enrolment_path, sign_in_first
from wakedock.mfa.deps import MfaServiceDep
from wakedock.proxy.access import HANDOFF_PATH
from wakedock.proxy.deps import ProxyAccessDep, ServiceDirectoryDep
from wakedock.proxy.directory import normalise_host
from wakedock.rbac.dependencies import public
from wakedock.web.templating import message_page

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get(HANDOFF_PATH, dependencies=[Depends(public)])
async def proxy_handoff(
    request: Request,
    directory: ServiceDirectoryDep,
    access: ProxyAccessDep,
    mfa: MfaServiceDep,
    sessions: SessionStoreDep,
    next: str = "",
) -> Response:
    """Send a signed-in browser back to a protected service host with a one-time ticket."""
    try:
        parts = urlsplit(next)
    except ValueError:  # e.g. an unbalanced "[" read as an IPv6 host
        return message_page("Unknown service", "This address is not a WakeDock service.", 400)
    host = normalise_host(parts.netloc)
    if parts.scheme not in ("http", "https") or host is None or not directory.knows(host):
        return message_page("Unknown service", "This address is not a WakeDock service.", 400)
    here = f"{HANDOFF_PATH}?" + urlencode({"next": next})
    session = await browser_session(request, sessions)
    if session is None:
        return sign_in_first(here)
    principal = session.principal
    if mfa.enrolment_pending(principal):
        # A ticket would be refused by the service host (and the browser sent back here).
        return RedirectResponse(enrolment_path(here), status_code=303)
    ticket = access.issue_ticket(principal, host)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    query = urlencode({"ticket": ticket, "next": path})
    return RedirectResponse(f"{parts.scheme}://{parts.netloc}/_wakedock/auth?{query}", 303)
