"""One place that turns errors into JSON: {"detail": ..., "code": ...}. Never a traceback.

Also the one place that recognises an outage of the database or of the disk under it
(connection lost or refused, disk full): that is a 503 with Retry-After naming the dependency,
logged once when the outage starts and once when it ends, instead of a 500 and a traceback per
request. The failed action still did not happen: its transaction (and its audit event) rolled
back together.
"""

from __future__ import annotations

import errno
import logging
import secrets
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wakedock.errors import DatabaseUnavailable, WakeDockError

log = logging.getLogger("wakedock.errors")

# The stable code of an answer that carries no more specific one, by status: the API's HTTP
# errors and the proxy's own pages name them alike.
HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "too_many_attempts",
    502: "bad_gateway",
    503: "service_unavailable",
}


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, WakeDockError):  # pragma: no cover - registered for this type only
        raise exc
    return _domain_error_response(exc)


def _domain_error_response(exc: WakeDockError) -> JSONResponse:
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
        {"detail": detail, "code": HTTP_CODES.get(status, "http_error")},
        status_code=status,
        headers=getattr(exc, "headers", None),
    )


# SQLite's answer when its file cannot grow; PostgreSQL's SQLSTATE class 53 (disk full, out of
# memory, too many connections) is "insufficient resources".
_FULL = "database or disk is full"


# SQLite's answers when its file cannot be reached at all.
_SQLITE_GONE = ("unable to open database file", "disk i/o error")
# PostgreSQL SQLSTATEs of a server that cannot serve: connection exceptions (class 08),
# insufficient resources (53), and shutting down or starting up (57P01..57P03).
_PG_GONE_CLASSES = ("08", "53")
_PG_GONE = frozenset({"57P01", "57P02", "57P03"})


def _unreachable(exc: sa.DBAPIError) -> bool:
    """The database itself is gone or cannot serve (not a lock, a deadlock, a timeout of one
    statement: those are anomalies of this request, answered 500 with their trace)."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:
        message = str(exc.orig).lower()
        # psycopg: no SQLSTATE when no server answered at all (refused, reset, timed out).
        return "sqlite" not in type(exc.orig).__module__ or any(m in message for m in _SQLITE_GONE)
    return sqlstate.startswith(_PG_GONE_CLASSES) or sqlstate in _PG_GONE


def outage_of(exc: BaseException) -> DatabaseUnavailable | None:
    """The 503 to answer when `exc` means the database or its disk cannot serve; else None."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DatabaseUnavailable("the disk is full", dependency="disk")
    if isinstance(exc, sa.DBAPIError):
        if _FULL in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "53100":
            return DatabaseUnavailable("the database is unavailable: its disk is full")
        if _unreachable(exc):
            return DatabaseUnavailable("the database is unavailable")
    if isinstance(exc, sa.TimeoutError):  # every pooled connection stuck on a dead server
        return DatabaseUnavailable("the database is unavailable")
    return None


class Outages:
    """Says once when a dependency becomes unavailable and once when it is back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._refused = 0

    def down(self, outage: DatabaseUnavailable, exc: BaseException) -> None:
        with self._lock:
            self._refused += 1
            if self._since is not None:
                return
            self._since = time.monotonic()
        # The DBAPI's own message, never SQLAlchemy's (which quotes the statement and its
        # parameters): no data from the request reaches the log.
        cause = getattr(exc, "orig", None) or exc
        log.error(
            "%s (%s: %s); answering 503 until it recovers",
            outage.detail,
            type(cause).__name__,
            " ".join(str(cause).split())[:200],
        )

    def up(self) -> None:
        """A write reached the database: an outage, if there was one, is over."""
        if self._since is None:  # the hot path: no lock
            return
        with self._lock:
            if self._since is None:
                return
            lasted, refused = time.monotonic() - self._since, self._refused
            self._since, self._refused = None, 0
        log.warning(
            "the database is available again after %.0f s (%d request(s) answered 503)",
            lasted,
            refused,
        )


class CatchAllMiddleware:
    """Any unhandled error becomes a JSON 500 with a correlation id, inside the header layer;
    an outage of the database or its disk a 503 (see the module docstring)."""

    def __init__(self, app: ASGIApp, outages: Outages) -> None:
        # Shared with the host router and the database's commit hook: "logged once per
        # outage" holds only with one tracker per process.
        self.app = app
        self.outages = outages

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
            outage = outage_of(exc)
            if outage is not None:
                self.outages.down(outage, exc)
                if started:
                    raise
                await _domain_error_response(outage)(scope, receive, send)
                return
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
