"""Request body limits on the admin host, enforced while the body is read.

A declared `Content-Length` over the limit is answered 413 before a byte of the body is read. A
chunked (or under-declared) body is counted as it arrives and refused as soon as it passes the
limit, so nothing beyond the limit is ever held. The limit depends on the path: a small default
for the JSON API, and the few routes that need another one (files, login forms) declare theirs.
Service hosts never reach this middleware: proxied bodies stream.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised by `receive` past the limit. An HTTPException, so that FastAPI's body parsing lets
    it through and web/errors.py answers it as JSON 413 `payload_too_large` (the application's
    exception handlers sit inside this middleware)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body larger than {limit} bytes")


def _too_large(limit: int) -> JSONResponse:
    error = BodyTooLarge(limit)
    return JSONResponse({"detail": error.detail, "code": "payload_too_large"}, status_code=413)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            # The HTTP parser has already refused malformed or conflicting values.
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """`limits` maps an exact path, or a prefix ending in `/`, to its own limit (first match)."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self._default = default
        self._limits = tuple(limits.items())

    def limit_for(self, path: str) -> int:
        for prefix, limit in self._limits:
            if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
                return limit
        return self._default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if received > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The chunk that crossed the limit is dropped here, never handed on.
                    raise BodyTooLarge(limit)
            return message

        # BodyTooLarge is an HTTPException: the application's error handlers answer it (JSON 413).
        await self.app(scope, limited_receive, send)
