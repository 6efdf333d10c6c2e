"""What a visitor of a service host sees while it wakes, or when it cannot: small static pages.

No inline script or style (CSP `script-src 'self'`), the service's display name escaped, and
nothing internal (no container, image or host name).
"""

from __future__ import annotations

import html

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from wakedock.web.errors import HTTP_CODES

PREFIX = "/_wakedock"
STATUS_PATH = f"{PREFIX}/status"
SCRIPT_PATH = f"{PREFIX}/loading.js"
STYLE_PATH = f"{PREFIX}/loading.css"
# The edge's access check for a service it proxies directly (docs/edge.md): 204, 401 or 403.
EDGE_AUTH_PATH = f"{PREFIX}/edge-auth"

# What these pages need beyond the set every answer WakeDock writes gets (web/headers.py, added
# by the proxy with `Cache-Control: no-store`): a CSP allowing only their own script and style,
# and no Referer at all, since the ticket hand-off URL must never reach the app, or anyone else.
# They post nothing (form-action 'none'), so they need no usable Origin.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}

LOADING_JS = """\
(function () {
  "use strict";
  var bar = document.getElementById("progress");
  var note = document.getElementById("note");
  function poll() {
    fetch("STATUS_PATH", {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.state === "ready") { window.location.reload(); return; }
        if (s.state === "failed") { note.textContent = s.message; return; }
        if (bar && typeof s.progress === "number") { bar.value = s.progress; }
        setTimeout(poll, 500);
      })
      .catch(function () { setTimeout(poll, 1000); });
  }
  poll();
}());
""".replace("STATUS_PATH", STATUS_PATH)

LOADING_CSS = """\
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 20vh auto; color: #222; }
h1 { font-size: 1.4rem; } progress { width: 100%; height: 1rem; } .note { color: #555; }
"""


def _page(title: str, body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{STYLE_PATH}"></head>\n<body>{body}</body></html>\n'
    )
    return Response(
        document,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**PAGE_HEADERS, **(headers or {})},
    )


def loading_page(display_name: str) -> Response:
    """Shown at once to a browser while the service wakes; the script polls the status."""
    name = html.escape(display_name)
    body = (
        f"<h1>Starting {name}&hellip;</h1>"
        '<progress id="progress" max="100" value="5"></progress>'
        '<p id="note" class="note">This page reloads by itself when it is ready.</p>'
        f'<script src="{SCRIPT_PATH}" defer></script>'
        # Without JavaScript, a plain refresh does the same.
        '<noscript><meta http-equiv="refresh" content="3"></noscript>'
    )
    return _page(f"Starting {display_name}", body, 200)


class MessagePage(Response):
    """A small HTML page for a browser; the same words as JSON `{"detail", "code"}` for any
    other client (one asking for JSON, or for anything but HTML)."""

    def __init__(
        self,
        title: str,
        message: str,
        status: int,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        page = _page(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>", status)
        super().__init__(
            page.body,
            status_code=status,
            media_type="text/html; charset=utf-8",
            headers={**PAGE_HEADERS, **(headers or {})},
        )
        self._as_json = {"detail": f"{title}. {message}", "code": code or HTTP_CODES[status]}
        self._extra = headers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if wants_html(Headers(scope=scope).get("accept", "")):
            await super().__call__(scope, receive, send)
            return
        answer = JSONResponse(
            self._as_json, self.status_code, headers={**PAGE_HEADERS, **self._extra}
        )
        await answer(scope, receive, send)


def message_page(
    title: str,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> Response:
    return MessagePage(title, message, status, headers, code)


def asset(path: str) -> Response | None:
    if path == SCRIPT_PATH:
        return Response(LOADING_JS, media_type="text/javascript", headers=PAGE_HEADERS)
    if path == STYLE_PATH:
        return Response(LOADING_CSS, media_type="text/css", headers=PAGE_HEADERS)
    return None


def wants_html(accept: str) -> bool:
    """A browser navigation: it asked for HTML (API clients ask for JSON or anything)."""
    return "text/html" in accept.lower()
