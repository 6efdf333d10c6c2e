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
DARK_STYLE_PATH = f"{PREFIX}/loading-dark.css"
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
        if (s.state === "failed") { if (note) { note.textContent = s.message; } return; }
        if (bar && typeof s.progress === "number") { bar.value = s.progress; }
        setTimeout(poll, 500);
      })
      .catch(function () { setTimeout(poll, 1000); });
  }
  poll();
}());
""".replace("STATUS_PATH", STATUS_PATH)

_BASE_CSS = """\
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 20vh auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; } progress { width: 100%; height: 1rem; }
.preview { border: 1px solid; border-radius: 0.5rem; padding: 0.5rem 0.75rem; font-size: 0.9rem; }
"""
_LIGHT = "body { color: #222; background: #fff; } .note { color: #555; } a { color: #0645ad; }"
_DARK = "body { color: #eee; background: #16181d; } .note { color: #bbb; } a { color: #9cc2ff; }"
# The built-in theme follows the visitor's system; the dark theme is dark whatever it says.
# (`color-scheme` gives native controls, the progress bar, the same scheme.)
LOADING_CSS = (
    f":root {{ color-scheme: light dark; }}\n{_BASE_CSS}{_LIGHT}\n"
    f"@media (prefers-color-scheme: dark) {{ {_DARK} }}\n"
)
LOADING_DARK_CSS = (
    f":root {{ color-scheme: dark; }}\n{_BASE_CSS}{_DARK}\nprogress {{ accent-color: #9cc2ff; }}\n"
)
STYLESHEETS = {"default": STYLE_PATH, "dark": DARK_STYLE_PATH}


def _page(
    title: str,
    body: str,
    status: int,
    headers: dict[str, str] | None = None,
    stylesheet: str = STYLE_PATH,
) -> Response:
    return Response(
        document(title, body, stylesheet),
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**PAGE_HEADERS, **(headers or {})},
    )


def document(title: str, body: str, stylesheet: str = STYLE_PATH) -> str:
    """A whole page around `body` (markup already escaped), with its one stylesheet."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{stylesheet}"></head>\n<body>{body}</body></html>\n'
    )


def loading_body(display_name: str) -> str:
    """The built-in page's content: a heading, the progress bar and the note the script
    updates (without the script)."""
    name = html.escape(display_name)
    return (
        f"<h1>Starting {name}&hellip;</h1>"
        '<progress id="progress" max="100" value="5"></progress>'
        '<p id="note" class="note">This page reloads by itself when it is ready.</p>'
    )


# The page's one script (it polls the status), and a plain refresh without JavaScript.
POLLING = (
    f'<script src="{SCRIPT_PATH}" defer></script>'
    '<noscript><meta http-equiv="refresh" content="3"></noscript>'
)


def loading_page(
    display_name: str, body: str | None = None, stylesheet: str = STYLE_PATH
) -> Response:
    """Shown at once to a browser while the service wakes; the script polls the status.
    `body`: a custom theme's rendered content (proxy/themes.py) instead of the built-in one."""
    content = loading_body(display_name) if body is None else body
    return _page(f"Starting {display_name}", content + POLLING, 200, stylesheet=stylesheet)


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
    if path == DARK_STYLE_PATH:
        return Response(LOADING_DARK_CSS, media_type="text/css", headers=PAGE_HEADERS)
    return None


def wants_html(accept: str) -> bool:
    """A browser navigation: it asked for HTML (API clients ask for JSON or anything)."""
    return "text/html" in accept.lower()
