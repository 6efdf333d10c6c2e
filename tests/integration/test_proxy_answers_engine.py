"""What a visitor and an operator see when a proxied service answers oddly or cannot start, on
a real `wakedock serve`, the real Docker engine and the test app in a container: the upstream's
own answers (its Date, a 501 sent before it read the body, a stream event by event) and a wake
whose container exits."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.engine import AddApp
from support.server import WakeDockProcess, wakedock_server

pytestmark = pytest.mark.integration

APP = {"Host": "app.localhost"}
# The Date the test app's /dated route sends (tests/support/apps/testapp.py).
FIXED_DATE = "Sat, 01 Jan 2000 00:00:00 GMT"


@pytest.fixture
def env(installation: str) -> dict[str, str]:
    return {"WAKEDOCK_DOCKER__INSTALLATION": installation}


def client_for(server: WakeDockProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=90)


@pytest.fixture
def woken(tmp_path: Path, env: dict[str, str], add_app: AddApp) -> Iterator[httpx.Client]:
    """A client of `wakedock serve` whose public test app `app` has answered once (woken)."""
    data = tmp_path / "data"
    add_app(data, env, "app")
    with wakedock_server(data, env=env) as server, client_for(server) as http:
        assert http.get("/", headers=APP).status_code == 200  # woken
        yield http


def test_proxied_answers_carry_one_date_the_upstreams(woken: httpx.Client) -> None:
    dated = woken.get("/dated", headers=APP)
    assert dated.status_code == 200 and dated.text == "dated\n"
    assert dated.headers.get_list("date") == [FIXED_DATE]
    # The app's usual answers and WakeDock's own ones are dated, once.
    assert len(woken.get("/", headers=APP).headers.get_list("date")) == 1
    own = woken.get("/api/v1/health/live")
    assert len(own.headers.get_list("date")) == 1
    assert own.headers["date"].endswith(" GMT")


def test_an_upstreams_501_to_a_post_reaches_the_visitor(woken: httpx.Client) -> None:
    body = b"x" * (4 * 2**20)
    reply = woken.post("/unsupported", headers=APP, content=body)
    assert reply.status_code == 501, reply.text
    assert "POST is not implemented by this app" in reply.text
    assert woken.post("/echo", headers=APP, content=b"abc").text.startswith("got 3 bytes")


def test_a_stream_reaches_the_visitor_event_by_event(woken: httpx.Client) -> None:
    """The server holds an answer's head back to send it with the body's start: a stream (three
    events 0.3 s apart) must still arrive as it is written, not when it ends."""
    arrivals: list[tuple[str, float]] = []
    with woken.stream("GET", "/sse?n=3", headers=APP) as events:
        assert events.headers["content-type"] == "text/event-stream"
        head_at = time.monotonic()
        for line in events.iter_lines():
            if line:
                arrivals.append((line, time.monotonic()))
    assert [line for line, _ in arrivals] == ["data: event 0", "data: event 1", "data: event 2"]
    assert arrivals[0][1] - head_at < 0.25  # the head came with the first event
    assert arrivals[2][1] - arrivals[0][1] > 0.45  # the others as they were written


def test_a_container_exiting_at_once_fails_its_wake_with_the_cause_in_the_log(
    tmp_path: Path, python_image: str, env: dict[str, str], add_app: AddApp
) -> None:
    data = tmp_path / "data"
    crash = ["/usr/bin/python3", "-c", "import sys; sys.exit(3)"]
    add_app(data, env, "crash", command=crash, wake_timeout_s=90)
    with wakedock_server(data, env=env) as server, client_for(server) as http:
        page = http.get("/", headers={"Host": "crash.localhost", "Accept": "*/*"})
        log = server.log()
    assert page.status_code == 502
    assert "crash could not be started" in page.text
    assert "An administrator can find the cause in the audit trail" in page.text
    assert python_image not in page.text and "code 3" not in page.text
    # The operator's log says which service and why, once.
    lines = [line for line in log.splitlines() if "could not wake crash" in line]
    assert len(lines) == 1, log
    assert "the container exited while starting with code 3" in lines[0]
    with sqlite3.connect(data / "wakedock.db") as db:
        [(details,)] = db.execute(
            "SELECT details FROM audit_events WHERE type = 'service_start' AND outcome = 'failure'"
        ).fetchall()
    assert "code 3" in details
