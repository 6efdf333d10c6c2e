"""`GET /services/{name}/loading-preview`: a service's loading page as its visitors would see it
(its theme, its custom template rendered in the same sandbox), woken by nothing.

The page is the proxy's own (proxy/themes.py, proxy/pages.py), with a note on top saying it is a
preview (and, when a custom template failed, why visitors get the built-in page instead), and
without the script: nothing polls. It is served on the admin host under a CSP stricter than the
pages' own: no script at all, no form, no frame, so a template's markup can do nothing here.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from wakedock.dashboard.browser import Pages, PagesDep, permitted, signed_in
from wakedock.proxy import pages as loading
from wakedock.proxy.deps import LoadingPagesDep
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.services.deps import ServiceManagerDep
from wakedock.services.errors import ServiceNotFound
from wakedock.services.spec import DNS_LABEL
from wakedock.web.deps import context_of
from wakedock.web.templating import message_page

router = APIRouter(tags=["pages"], include_in_schema=False)

PREVIEW_PATH = "/services/{name}/loading-preview"
# The loading pages' stylesheets, served on the admin host for the preview.
STYLESHEETS = {"default": "/assets/loading.css", "dark": "/assets/loading-dark.css"}
PREVIEW_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_THEMES = {"default": "built-in", "dark": "dark", "custom": "custom"}


def _note(name: str, theme: str, failure: str | None) -> str:
    said = (
        f'<p class="preview" role="note">Preview of the {_THEMES[theme]} loading page of '
        f"{html.escape(name)}: nothing was woken. "
        '<a href="/services">Back to the services</a></p>'
    )
    if failure is not None:
        said += (
            '<p class="preview" role="alert">The custom template could not be rendered, so '
            f"visitors get the built-in page: {html.escape(failure)}</p>"
        )
    return said


@router.get(PREVIEW_PATH, dependencies=[Depends(public)])
async def loading_preview(
    request: Request,
    services: ServiceManagerDep,
    themes: LoadingPagesDep,
    name: str = Path(max_length=63),
    pages: Pages = PagesDep,
) -> Response:
    """Signed in, with `services:read` (who may see a service in the list may see its loading
    page); the page as rendered for a visitor, never a wake."""
    here = f"/services/{quote(name, safe='')}/loading-preview"
    found = await signed_in(request, pages, here)
    if isinstance(found, Response):
        return found
    if not await permitted(request, pages, found.principal, Permission.SERVICES_READ):
        return message_page("Loading page", "Your role may not do this.", 403)
    try:
        if not DNS_LABEL.fullmatch(name):
            raise ServiceNotFound("no such service")
        view = await run_in_threadpool(services.get, name)
    except ServiceNotFound:
        return message_page("Loading page", "No such service.", 404, "/services", "Back")
    context = context_of(request).as_actor(found.principal.username)
    page = await run_in_threadpool(themes.render, view, context)
    title = view.spec.display_name or view.name
    document = loading.document(
        f"Starting {title}",
        _note(title, page.theme, page.failure) + page.body,
        STYLESHEETS[page.stylesheet_name],
    )
    return Response(
        document,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": PREVIEW_CSP,
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


@router.get(STYLESHEETS["default"], dependencies=[Depends(public)])
async def loading_stylesheet() -> Response:
    return _css(loading.LOADING_CSS)


@router.get(STYLESHEETS["dark"], dependencies=[Depends(public)])
async def loading_dark_stylesheet() -> Response:
    return _css(loading.LOADING_DARK_CSS)


def _css(text: str) -> Response:
    return Response(text, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
