"""Security headers on every response WakeDock writes (errors and 404s included), and a
request id.

`SecurityHeaders` wraps the ASGI `send` of a response, whatever produced it: the admin
application through the middleware below, and the host router and the proxy for their own
answers on other hosts.
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # Modern browsers ignore it; "0" disables the buggy legacy auditor (OWASP advice).
    (b"x-xss-protection", b"0"),
    # `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` on its
    # own form posts, and the same-origin check can no longer tell them from a forged one. Other
    # origins (the proxied apps included) still get no Referer, so no admin URL leaks to them.
    (b"referrer-policy", b"same-origin"),
    (
        b"permissions-policy",
        b"camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_DROPPED = {b"server", b"x-powered-by"}


def _hsts(max_age: int) -> bytes:
    return f"max-age={max_age}; includeSubDomains".encode()


def protocol_answer_headers(*, hsts_max_age: int | None) -> list[tuple[bytes, bytes]]:
    """The headers of an answer the HTTP server writes itself, below the ASGI app (a 431 for a
    head too large), which no ASGI middleware sees."""
    headers = [*_BASE_HEADERS, (b"cache-control", b"no-store")]
    if hsts_max_age is not None:
        headers.append((b"strict-transport-security", _hsts(hsts_max_age)))
    return headers


class SecurityHeaders:
    """The header set WakeDock puts on every response it writes itself, on any host: the admin
    application (through the middleware below), the answer to an unknown or malformed Host and
    the proxy's own pages. Responses of a proxied service are its own and left alone."""

    def __init__(
        self, *, hsts_max_age: int, hsts_always: bool, csp_report_uri: str | None = None
    ) -> None:
        """`csp_report_uri`: where browsers report what the CSP refused (the admin host's
        pages only: on a service host a relative report URI would reach the service)."""
        self._hsts = _hsts(hsts_max_age)
        self._hsts_always = hsts_always
        self._base = _BASE_HEADERS
        if csp_report_uri is not None:
            policy = f"{CSP}; report-uri {csp_report_uri}".encode()
            self._base = [
                (k, policy if k == b"content-security-policy" else v) for k, v in _BASE_HEADERS
            ]

    def wrap(self, scope: Scope, send: Send, *, no_store: bool) -> Send:
        """`send`, adding the set to the response start (a header already there is kept: a
        page may carry a stricter CSP), and `Cache-Control: no-store` if asked and absent."""
        request_id = scope.setdefault("state", {}).setdefault("request_id", secrets.token_hex(8))
        https = scope.get("scheme") in ("https", "wss") or self._hsts_always

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED
                ]
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self._base if k not in present]
                headers.append((b"x-request-id", request_id.encode()))
                if https:
                    headers.append((b"strict-transport-security", self._hsts))
                if no_store and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        return send_with_headers


class SecurityHeadersMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts_max_age: int,
        hsts_always: bool,
        csp_report_uri: str | None = None,
    ) -> None:
        self.app = app
        self._headers = SecurityHeaders(
            hsts_max_age=hsts_max_age, hsts_always=hsts_always, csp_report_uri=csp_report_uri
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A fresh id for each request that reaches the admin application.
        scope.setdefault("state", {})["request_id"] = secrets.token_hex(8)
        api = scope["path"].startswith("/api/")
        await self.app(scope, receive, self._headers.wrap(scope, send, no_store=api))
