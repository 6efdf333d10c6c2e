"""One place that turns errors into JSON: {"detail": ..., "code": ...}. Never a traceback."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wakedock.errors import WakeDockError

log = logging.getLogger("wakedock.errors")

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    413: "payload_too_large",
}


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, WakeDockError):  # pragma: no cover - registered for this type only
        raise exc
    body = {"detail": exc.detail, "code": exc.code, **exc.extra}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers())


def _message(error: dict[str, Any]) -> str:
    """pydantic's message for one error, unless it would repeat what the client sent."""
    kind, message = str(error.get("type", "")), str(error.get("msg", ""))
    if kind == "union_tag_invalid":
        # pydantic's own text quotes the tag that was sent.
        expected = (error.get("ctx") or {}).get("expected_tags", "")
        return f"Input tag does not match any of the expected tags: {expected}"
    if kind == "value_error" and message.startswith("value is not a valid email address"):
        # email-validator's reasons quote parts of the address (a domain, an IP literal).
        return "value is not a valid email address"
    sent = error.get("input")
    # Any other message quoting the input (a validator written carelessly): a plain one. Short
    # inputs are common words ("a", "id") that a message may contain by chance.
    if isinstance(sent, str) and len(sent) >= 4 and sent in message:
        return "invalid value"
    return message


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    # Only where and what: the offending input is never echoed back (no reflected payloads).
    detail = [
        {"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type", "")}
        for e in errors
    ]
    return JSONResponse({"detail": detail, "code": "validation_error"}, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
    return JSONResponse(
        {"detail": detail, "code": _HTTP_CODES.get(status, "http_error")},
        status_code=status,
        headers=getattr(exc, "headers", None),
    )


class CatchAllMiddleware:
    """Any unhandled error becomes a JSON 500 with a correlation id, inside the header layer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            correlation = scope.get("state", {}).get("request_id") or secrets.token_hex(8)
            log.error("unhandled error (correlation id %s)", correlation, exc_info=exc)
            if started:
                raise
            response = JSONResponse(
                {
                    "detail": "Internal server error",
                    "code": "internal_error",
                    "correlation_id": correlation,
                },
                status_code=500,
            )
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WakeDockError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
