"""Who may open a console page: a signed-in browser whose role holds `console:read` (admins
only) and the permission the API demands for what the page shows or changes.

A refusal is the API guard's (audited as `forbidden_access`) and answers a 403 page; without a
session the browser is sent to the sign-in form, then back.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from wakedock.auth.forms import BrowserSession
from wakedock.dashboard.browser import Pages, permitted, signed_in
from wakedock.rbac.permissions import Permission
from wakedock.web.templating import message_page

CONSOLE_PATH = "/admin"
NOT_ALLOWED = "Only administrators may open the admin console."


def refused() -> HTMLResponse:
    """The 403 page of a console page or form the role may not use."""
    return message_page("Admin", NOT_ALLOWED, 403, link="/services", link_text="Services")


async def console_session(
    request: Request, pages: Pages, here: str, *needs: Permission
) -> BrowserSession | Response:
    """The live session of someone who may open `here`, or the answer to send instead: the
    sign-in form (then back to `here`), the enrolment page, or the 403 page."""
    found = await signed_in(request, pages, here)
    if isinstance(found, Response):
        return found
    for permission in (Permission.CONSOLE_READ, *needs):
        if not await permitted(request, pages, found.principal, permission):
            return refused()
    return found
