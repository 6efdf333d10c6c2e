"""Which failures are an outage of the database or its disk (503, logged once) and which are
plain bugs (500 with a correlation id). The outages themselves, on a real PostgreSQL stopped
mid-run and a real filled-up disk, are in tests/integration/test_database_outage.py."""

from __future__ import annotations

import errno
import logging
import sqlite3

import psycopg
import psycopg.errors
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa

from wakedock.web.errors import CatchAllMiddleware, Outages, install_error_handlers, outage_of


def _app(error: Exception, outages: Outages) -> TestClient:
    app = FastAPI()

    @app.get("/fail")
    async def fail() -> None:
        raise error

    install_error_handlers(app)
    app.add_middleware(CatchAllMiddleware, outages=outages)
    return TestClient(app, raise_server_exceptions=False)


def _sqlite(error: Exception) -> sa.DBAPIError:
    wrapped = sa.DBAPIError.instance(
        "INSERT INTO t VALUES (?)", ("a value from the request",), error, sqlite3.Error
    )
    assert isinstance(wrapped, sa.DBAPIError)
    return wrapped


def _postgres(error: Exception) -> sa.DBAPIError:
    wrapped = sa.DBAPIError.instance("SELECT 1", (), error, psycopg.Error)
    assert isinstance(wrapped, sa.DBAPIError)
    return wrapped


@pytest.mark.parametrize(
    "error",
    [
        _postgres(psycopg.OperationalError("connection refused")),  # no server answered
        _postgres(psycopg.errors.AdminShutdown("terminating connection")),  # 57P01
        _postgres(psycopg.errors.CannotConnectNow("the database system is starting up")),
        _postgres(psycopg.errors.TooManyConnections("too many clients already")),  # class 53
        _sqlite(sqlite3.OperationalError("unable to open database file")),
    ],
)
def test_a_database_that_cannot_serve_is_an_outage(error: Exception) -> None:
    outage = outage_of(error)
    assert outage is not None and outage.detail == "the database is unavailable"


def test_a_full_disk_outside_the_database_is_a_503_naming_the_disk() -> None:
    reply = _app(OSError(errno.ENOSPC, "No space left on device"), Outages()).get("/fail")
    assert reply.status_code == 503 and reply.headers["retry-after"]
    assert reply.json() == {
        "detail": "the disk is full",
        "code": "dependency_unavailable",
        "dependency": "disk",
    }


@pytest.mark.parametrize(
    "error",
    [
        _sqlite(sqlite3.IntegrityError("UNIQUE constraint failed: users.email")),
        _sqlite(sqlite3.InterfaceError("Error binding parameter 1")),
        # Contention, not an outage: the database answered.
        _sqlite(sqlite3.OperationalError("database is locked")),
        _postgres(psycopg.errors.DeadlockDetected("deadlock detected")),
        _postgres(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),
        OSError(errno.EACCES, "Permission denied"),
        ValueError("a bug"),
    ],
)
def test_other_failures_stay_internal_errors(error: Exception) -> None:
    assert outage_of(error) is None
    reply = _app(error, Outages()).get("/fail")
    assert reply.status_code == 500 and reply.json()["code"] == "internal_error"


def test_an_outage_is_logged_once_without_the_statement_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outages = Outages()
    client = _app(_sqlite(sqlite3.OperationalError("database or disk is full")), outages)
    with caplog.at_level(logging.INFO, logger="wakedock.errors"):
        for _ in range(5):
            reply = client.get("/fail")
            assert reply.status_code == 503
            assert reply.json()["detail"] == "the database is unavailable: its disk is full"
        outages.up()
        outages.up()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "its disk is full (OperationalError: database or disk is full)" in lines[0]
    assert "available again" in lines[1] and "5 request(s)" in lines[1]
    assert not any("a value from the request" in line or "INSERT" in line for line in lines)
