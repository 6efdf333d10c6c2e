"""Wake on demand end to end: a real `wakedock serve`, the real Docker engine, a real app.

Requests go to 127.0.0.1 with the service's Host header (`<name>.localhost` does not resolve on
every machine); WebSockets connect to 127.0.0.1 and send SNI and Host `<name>.localhost`.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker import DockerClient
from websockets.sync.client import connect as ws_connect

from support.engine import AddApp, container_of, wait_for
from support.server import WakeDockProcess, run_cli, wakedock_server

pytestmark = pytest.mark.integration

HTML = {"Accept": "text/html"}


# `container("app")`: the one container of service "app" in this test's installation.
Container = Callable[[str], Any]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def container(engine: DockerClient, installation: str) -> Container:
    return functools.partial(container_of, engine, installation)


def client_for(server: WakeDockProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, verify=server.ssl_context(), timeout=60)


@pytest.fixture
def env(installation: str) -> dict[str, str]:
    return {
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_PROXY__REAPER_INTERVAL_SECONDS": "0.5",
    }


def audit_rows(data: Path, type_: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(data / "wakedock.db") as db:
        return list(
            db.execute("SELECT target, outcome, details FROM audit_events WHERE type = ?", (type_,))
        )


def test_visit_wakes_the_service_then_idle_stops_it(
    data: Path, env: dict[str, str], add_app: AddApp, container: Container, network: str
) -> None:
    add_app(data, env, "app", {"NAME": "real-app"})
    created = container("app")
    assert created.status == "created"
    # `network_mode` of the YAML spec: the test's own bridge, not Docker's default one.
    assert created.attrs["HostConfig"]["NetworkMode"] == network
    with wakedock_server(data, env=env) as server, client_for(server) as http:
        reply = http.get("/", headers={"Host": "app.localhost"})
        assert reply.status_code == 200 and reply.text == "hello from real-app\n"
        assert container("app").status == "running"
        # The admin API still answers on its own host, never on the service's.
        assert http.get("/api/v1/health").status_code == 200
        assert http.get("/api/v1/health", headers={"Host": "nope.localhost"}).status_code == 404
        wait_for(
            lambda: container("app").status == "exited",
            "the idle stop",
            20,
        )
        # The engine reports the stop before WakeDock records it.
        wait_for(lambda: bool(audit_rows(data, "service_stop")), "the audited stop", 10)
        assert '"reason": "idle"' in audit_rows(data, "service_stop")[-1][2]
        # The next visit wakes it again.
        again = http.get("/", headers={"Host": "app.localhost"})
        assert again.text == "hello from real-app\n"


def test_200_concurrent_requests_start_the_container_once(
    data: Path, env: dict[str, str], add_app: AddApp, container: Container, engine: DockerClient
) -> None:
    add_app(data, env, "burst", {"NAME": "burst"}, idle_timeout_s=600)
    ref = container("burst").id
    with wakedock_server(data, env=env) as server:
        since = int(time.time()) - 1

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(
                base_url=server.base_url, verify=server.ssl_context(), timeout=60, limits=limits
            ) as http:
                requests = [
                    http.get("/", headers={"Host": "burst.localhost", **(HTML if n % 2 else {})})
                    for n in range(200)
                ]
                return await asyncio.gather(*requests)

        replies = asyncio.run(burst())
        until = int(time.time()) + 1
    events = engine.api.events(
        since=since, until=until, decode=True, filters={"type": "container", "container": ref}
    )
    starts = [e for e in events if e.get("status") == "start" or e.get("Action") == "start"]
    assert len(starts) == 1
    kinds = {"app" if r.text == "hello from burst\n" else "loading" for r in replies}
    codes = sorted({(r.status_code, r.text[:60]) for r in replies if r.status_code != 200})
    assert all(r.status_code == 200 for r in replies), codes
    assert all(r.text == "hello from burst\n" or "Starting burst" in r.text for r in replies)
    assert "app" in kinds


def _websocket(server: WakeDockProcess, host: str) -> Any:
    sock = socket.create_connection(("127.0.0.1", server.port))
    context = ssl.create_default_context(cafile=str(server.cert_path))
    # Host says which service; TLS checks "localhost" (OpenSSL refuses the single-label
    # wildcard *.localhost of the generated certificate).
    return ws_connect(
        f"wss://{host}:{server.port}/ws", sock=sock, ssl=context, server_hostname="localhost"
    )


def test_open_websocket_keeps_the_service_awake(
    data: Path, env: dict[str, str], add_app: AddApp, container: Container
) -> None:
    add_app(data, env, "chat")
    with wakedock_server(data, env=env) as server, client_for(server) as http:
        assert http.get("/", headers={"Host": "chat.localhost"}).status_code == 200
        with _websocket(server, "chat.localhost") as socket_:
            socket_.send("hello")
            assert socket_.recv(timeout=10) == "hello"
            time.sleep(6)  # twice the idle timeout, the socket open and quiet
            assert container("chat").status == "running"
            socket_.send("still here")
            assert socket_.recv(timeout=10) == "still here"
        wait_for(
            lambda: container("chat").status == "exited",
            "the idle stop once the socket closed",
            20,
        )


def test_slow_start_is_not_ready_before_it_listens(
    data: Path, env: dict[str, str], add_app: AddApp, container: Container
) -> None:
    add_app(data, env, "slow", {"DELAY": "4", "NAME": "slow"}, idle_timeout_s=600)
    with wakedock_server(data, env=env) as server, client_for(server) as http:
        page = http.get("/", headers={"Host": "slow.localhost", **HTML})
        assert "Starting slow" in page.text
        time.sleep(1.5)
        # Running, but not listening yet: still waking.
        assert container("slow").status == "running"
        status = http.get("/_wakedock/status", headers={"Host": "slow.localhost"}).json()
        assert status["state"] == "waking"
        started = time.monotonic()
        reply = http.get("/", headers={"Host": "slow.localhost"})
        assert reply.status_code == 200 and reply.text == "hello from slow\n"
        logs = container("slow").logs().decode()
        assert "listening" in logs
        assert time.monotonic() - started > 1.0


def test_protected_service_wakes_only_for_a_signed_in_user(
    data: Path, env: dict[str, str], add_app: AddApp, container: Container
) -> None:
    add_app(data, env, "vault", access={"policy": "authenticated"})
    password = secrets.token_urlsafe(18)
    created = run_cli(
        data,
        "user",
        "create",
        "carol",
        "--role",
        "viewer",
        "--password-stdin",
        stdin=password + "\n",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    with wakedock_server(data, env=env) as server, client_for(server) as http:
        anonymous = http.get("/", headers={"Host": "vault.localhost", **HTML})
        assert anonymous.status_code == 303
        assert "/auth/proxy?next=" in anonymous.headers["location"]
        assert http.get("/", headers={"Host": "vault.localhost"}).status_code == 401
        time.sleep(1)
        assert container("vault").status == "created"

        login = http.post(
            "/api/v1/auth/login",
            json={"username": "carol", "password": password, "mode": "cookie"},
            headers={"Origin": server.base_url},
        )
        assert login.status_code == 200, login.text
        handoff = http.get(
            "/auth/proxy",
            params={"next": "https://vault.localhost/"},
            follow_redirects=False,
        )
        assert handoff.status_code == 303, handoff.text
        ticket_path = handoff.headers["location"].removeprefix("https://vault.localhost")
        redeemed = http.get(ticket_path, headers={"Host": "vault.localhost"})
        assert redeemed.status_code == 303
        cookie = redeemed.headers["set-cookie"].split(";")[0]
        reply = http.get("/", headers={"Host": "vault.localhost", "Cookie": cookie})
        assert reply.status_code == 200 and reply.text == "hello from app\n"
        assert container("vault").status == "running"
