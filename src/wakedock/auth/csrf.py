"""CSRF protection for cookie-authenticated requests: the request's origin, and a token bound
to the session secret."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Collection
from urllib.parse import urlsplit

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor
from wakedock.auth.keys import Keyring, SigningKey
from wakedock.context import RequestContext
from wakedock.errors import CsrfFailed

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# The `Sec-Fetch-Site` values of a request no other site started. `none` means the user started
# it (address bar, bookmark, the browser's own re-post of a form): no page can make a browser send
# it, for a POST either, so it proves as much as `same-origin` (Go's net/http
# CrossOriginProtection reads it the same way). `same-site` is refused: the service hosts
# (`app.localhost`) are same-site with the admin host, and the apps behind them are not trusted.
_NO_OTHER_SITE = frozenset({"same-origin", "none"})


def _token(key: SigningKey, session_secret: str) -> str:
    mac = hmac.new(key.derive("csrf"), session_secret.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_token(keyring: Keyring, session_secret: str) -> str:
    """The token a browser must echo in X-CSRF-Token; it changes with every session."""
    return _token(keyring.current, session_secret)


def csrf_valid(keyring: Keyring, session_secret: str, presented: str | None) -> bool:
    """Valid under any accepted key: a page loaded before a key rotation keeps working."""
    if not presented:
        return False
    return any(
        hmac.compare_digest(_token(key, session_secret), presented) for key in keyring.accepted()
    )


def same_origin(request: Request, cors_origins: Collection[str]) -> bool:
    """False when a browser says, or shows, that another site started this request.

    Read the way browsers define it, most trusted first: `Sec-Fetch-Site` (no page can set it),
    else `Origin` (this server's scheme and host:port, or an allowed CORS origin), else `Referer`
    on this server. A foreign `Origin` is refused whatever the other headers say; `Origin: null`
    (sandboxed frames, a `no-referrer` page, a redirect across sites) proves nothing and is
    refused when nothing else proves the request same-origin. A request with none of the three
    headers comes from no browser: it carries no victim's cookie (the CSRF token still applies).
    """
    headers = request.headers
    origin = headers.get("origin")
    named = origin if origin != "null" else None  # an Origin that names a site
    allowed = origin is not None and origin in cors_origins
    if named is not None and not allowed and not _on_this_server(named, request):
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.strip().lower() in _NO_OTHER_SITE or allowed
    if named is not None:
        return True
    referer = headers.get("referer")
    if referer is not None:
        return _on_this_server(referer, request)
    return origin is None


def _on_this_server(url: str, request: Request) -> bool:
    """`url` (an Origin or a Referer) names this server: its host:port and scheme.

    `https` is accepted on a plain-HTTP request too: behind a TLS-terminating proxy the browser's
    scheme is https while the request reaches WakeDock over http.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = request.headers.get("host", "")
    return (
        bool(host)
        and parts.netloc.lower() == host.lower()
        and parts.scheme in {"https", request.url.scheme}
    )


class CsrfGuard:
    """The CSRF rules of browser (cookie) sessions, each refusal audited."""

    def __init__(self, keyring: Keyring, cors_origins: Collection[str], auditor: Auditor) -> None:
        self._keyring = keyring
        self._cors_origins = frozenset(cors_origins)
        self._auditor = auditor

    def token(self, session_secret: str) -> str:
        """The CSRF token of a browser session (it changes with every session)."""
        return csrf_token(self._keyring, session_secret)

    def same_origin(self, request: Request) -> bool:
        """False when another site started this request (see `same_origin`)."""
        return same_origin(request, self._cors_origins)

    async def require(
        self,
        request: Request,
        context: RequestContext,
        session_secret: str,
        username: str,
        presented: str | None,
    ) -> None:
        """A cookie-authenticated state change needs this server's origin and the session's
        CSRF token (`presented`: the X-CSRF-Token header, or a page's hidden form field); else
        audited 403."""
        if self.same_origin(request) and csrf_valid(self._keyring, session_secret, presented):
            return
        failed = Event(
            EventType.CSRF_FAILURE,
            Outcome.DENIED,
            target=request.url.path,
            details={"method": request.method},
        )
        await run_in_threadpool(self._auditor.record, failed, context.as_actor(username))
        raise CsrfFailed("CSRF token missing or invalid")

    async def refuse_cross_site_login(self, request: Request, context: RequestContext) -> None:
        """Login CSRF: a foreign page must not plant its session cookie in the victim's browser."""
        if self.same_origin(request):
            return
        refused = Event(
            EventType.CSRF_FAILURE,
            Outcome.DENIED,
            target=request.url.path,
            details={"method": "POST", "reason": "foreign origin on cookie login"},
        )
        await run_in_threadpool(self._auditor.record, refused, context)
        raise CsrfFailed("cross-site login refused")
