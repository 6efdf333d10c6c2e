"""Security headers on every response (errors and 404s included), and a request id.

A pure ASGI middleware: it wraps every response start, whatever produced it.
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
    (b"referrer-policy", b"no-referrer"),
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
    head too large), which this middleware never sees."""
    headers = [*_BASE_HEADERS, (b"cache-control", b"no-store")]
    if hsts_max_age is not None:
        headers.append((b"strict-transport-security", _hsts(hsts_max_age)))
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_max_age: int, hsts_always: bool) -> None:
        self.app = app
        self._hsts = _hsts(hsts_max_age)
        self._hsts_always = hsts_always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        is_api = scope["path"].startswith("/api/")
        https = scope.get("scheme") == "https" or self._hsts_always

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED
                ]
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _BASE_HEADERS if k not in present]
                headers.append((b"x-request-id", request_id.encode()))
                if https:
                    headers.append((b"strict-transport-security", self._hsts))
                if is_api and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
