"""The edge's direct routes end to end: `wakedock edge run` (real nginx + ModSecurity + CRS) in
front of a real `wakedock serve`, services in the real Docker engine.

Whether a request went straight to the service or through WakeDock shows in what the service
saw: nginx sends `X-Forwarded-For: <client>`, WakeDock appends its own peer (the edge) to the
chain the trusted edge sent, `127.0.0.1, 127.0.0.1`.
"""

from __future__ import annotations

import functools
import json
import secrets
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from docker import DockerClient
from websockets.sync.client import connect as ws_connect

from edge.test_edge_waf import TRUSTED, Edge, edge_in_front
from support.engine import (
    AddApp,
    add_app,
    container_of,
    engine,
    installation,
    network,
    python_image,
    wait_for,
)
from support.server import HOST, run_cli, wakedock_server

pytestmark = pytest.mark.integration
# The engine fixtures (tests/integration uses them through its conftest).
__all__ = ["add_app", "engine", "installation", "network", "python_image"]

DIRECT = "127.0.0.1"
THROUGH_WAKEDOCK = "127.0.0.1, 127.0.0.1"
Container = Callable[[str], Any]


@pytest.fixture
def container(engine: DockerClient, installation: str) -> Container:
    return functools.partial(container_of, engine, installation)


@pytest.fixture
def env(installation: str) -> dict[str, str]:
    # edge.direct_routes left at its default (auto): `edge run` registers and routes directly.
    return {
        **TRUSTED,
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_PROXY__REAPER_INTERVAL_SECONDS": "0.5",
        "WAKEDOCK_EDGE__STOP_GRACE_SECONDS": "2",
    }


class _ResentOnceClosed(httpx.HTTPTransport):
    """A GET sent again, as a browser does (RFC 9112, 9.3.1), when the kept-alive connection it
    went on was closed before any answer: these tests reload nginx at every route change, and
    an old worker closes its idle connections as it retires, whatever a client sends then."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(2):
            try:
                return super().handle_request(request)
            except httpx.RemoteProtocolError:
                if request.method not in ("GET", "HEAD"):
                    raise
        return super().handle_request(request)


def _client(edge: Edge) -> httpx.Client:
    return httpx.Client(
        base_url=f"https://{HOST}:{edge.port}",
        transport=_ResentOnceClosed(verify=edge.context()),
        timeout=60,
    )


def _hop(http: httpx.Client, host: str, cookie: str | None = None) -> str:
    """Which way a request to `host` went: the X-Forwarded-For the service saw."""
    headers = {"Host": host, **({"Cookie": cookie} if cookie else {})}
    reply = http.get("/headers", headers=headers)
    assert reply.status_code == 200, reply.text
    seen = json.loads(reply.text)
    assert "wakedock_proxy" not in seen.get("cookie", "")  # WakeDock's cookie, never the app's
    return str(seen["x-forwarded-for"])


def _direct_soon(http: httpx.Client, host: str, cookie: str | None = None) -> None:
    """Wait until requests to `host` go directly (the edge rendered the route, and nginx's new
    workers took over from the old ones)."""
    wait_for(lambda: _hop(http, host, cookie) == DIRECT, f"the direct route of {host}", 30)


def _routed(data: Path, name: str, routed: bool = True) -> Callable[[], bool]:
    """Whether the edge's configuration (`edge run`'s default --out) routes `name` directly."""
    conf = data / "edge" / "nginx.conf"
    return lambda: (f"upstream edge_service_{name} " in conf.read_text()) == routed


def _stops(data: Path, name: str) -> list[str]:
    with sqlite3.connect(data / "wakedock.db") as db:
        rows = db.execute(
            "SELECT details FROM audit_events WHERE type = 'service_stop' AND target = ?", (name,)
        )
        return [row[0] for row in rows]


def test_awake_services_are_served_by_nginx_and_sleeping_ones_wake_through_wakedock(
    tmp_path: Path, nginx: Path, env: dict[str, str], add_app: AddApp, container: Container
) -> None:
    data = tmp_path / "data"
    add_app(data, env, "app", idle_timeout_s=3)
    add_app(data, env, "steady", idle_timeout_s=600)
    with (
        wakedock_server(data, https=False, env=env) as server,
        edge_in_front(data, server, env, poll_seconds=0.3) as edge,
        _client(edge) as http,
    ):
        # Asleep: through WakeDock, which wakes it and holds the request.
        assert _hop(http, "app.localhost") == THROUGH_WAKEDOCK
        _direct_soon(http, "app.localhost")
        # Awake: nginx proxies it directly, and its traffic reaches the idle reaper over the
        # activity socket: 8 s of direct requests, over twice its idle timeout, keep it awake.
        until = time.monotonic() + 8
        while time.monotonic() < until:
            assert _hop(http, "app.localhost") == DIRECT
            time.sleep(0.5)
        assert container("app").status == "running"
        assert _stops(data, "app") == []
        # Traffic stops: the reaper stops it, and the edge drops the route first (the stop
        # grace) so nothing is sent to a port the engine may give another container.
        wait_for(_routed(data, "app", routed=False), "the route dropped", 20)
        assert container("app").status == "running"  # still within the grace
        wait_for(lambda: container("app").status == "exited", "the idle stop", 20)
        wait_for(lambda: bool(_stops(data, "app")), "the audited stop", 10)
        assert '"reason": "idle"' in _stops(data, "app")[-1]
        # Asleep again: WakeDock wakes it (a browser gets the loading page).
        page = http.get("/", headers={"Host": "app.localhost", "Accept": "text/html"})
        assert page.status_code == 200 and "Starting app" in page.text, page.text

        # WebSockets go through WakeDock, whose open connection keeps the service awake: quiet
        # for twice its idle timeout, the socket open, it is not stopped.
        _direct_soon(http, "app.localhost")
        with ws_connect(
            f"wss://app.localhost:{edge.port}/ws",
            sock=socket.create_connection((HOST, edge.port)),
            ssl=ssl.create_default_context(cafile=str(edge.ca)),
            server_hostname="localhost",
        ) as socket_:
            socket_.send("hello")
            assert socket_.recv(timeout=10) == "hello"
            time.sleep(6)
            assert container("app").status == "running"
            socket_.send("still here")
            assert socket_.recv(timeout=10) == "still here"

        assert _hop(http, "steady.localhost") == THROUGH_WAKEDOCK
        _direct_soon(http, "steady.localhost")

        # WakeDock stops: the awake service still answers, straight from nginx.
        server.stop()
        assert _hop(http, "steady.localhost") == DIRECT


def test_a_protected_service_refuses_without_a_cookie_and_serves_one_directly(
    tmp_path: Path, nginx: Path, env: dict[str, str], add_app: AddApp, container: Container
) -> None:
    data = tmp_path / "data"
    add_app(data, env, "vault", idle_timeout_s=600, access={"policy": "authenticated"})
    password = secrets.token_urlsafe(18)
    created = run_cli(
        data, "user", "create", "carol", "--role", "viewer", "--password-stdin",
        stdin=password + "\n", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with (
        wakedock_server(data, https=False, env=env) as server,
        edge_in_front(data, server, env, poll_seconds=0.3) as edge,
        _client(edge) as http,
        httpx.Client(base_url=server.base_url, timeout=60) as direct,
    ):
        # The service host cookie, from WakeDock itself (sign-in, hand-off, redeemed ticket).
        login = direct.post(
            "/api/v1/auth/login",
            json={"username": "carol", "password": password, "mode": "cookie"},
            headers={"Origin": server.base_url},
        )
        assert login.status_code == 200, login.text
        # Its session cookie is Secure: sent by hand over this plain-HTTP test listener.
        session = "; ".join(c.split(";")[0] for c in login.headers.get_list("set-cookie"))
        handoff = direct.get(
            "/auth/proxy",
            params={"next": "https://vault.localhost/"},
            headers={"Cookie": session},
        )
        assert handoff.status_code == 303, handoff.text
        where = urlsplit(handoff.headers["location"])
        ticket = f"{where.path}?{where.query}"
        redeemed = direct.get(ticket, headers={"Host": "vault.localhost"})
        assert redeemed.status_code == 303, redeemed.text
        cookie = redeemed.headers["set-cookie"].split(";")[0]

        # Woken through WakeDock for the signed-in visitor, then proxied directly.
        assert _hop(http, "vault.localhost", cookie) == THROUGH_WAKEDOCK
        _direct_soon(http, "vault.localhost", cookie)
        # Without a cookie (or with a forged one, signed with no key of WakeDock's): WakeDock's
        # sign-in redirect, or its 401.
        forged = cookie[:-43] + "A" * 43
        for headers in ({}, {"Cookie": forged}):
            anonymous = http.get(
                "/", headers={"Host": "vault.localhost", "Accept": "text/html", **headers}
            )
            assert anonymous.status_code == 303, anonymous.text
            assert "/auth/proxy?next=" in anonymous.headers["location"]
            refused = http.get("/headers", headers={"Host": "vault.localhost", **headers})
            assert refused.status_code == 401
            assert "x-forwarded-for" not in refused.text  # nothing of the app's
        # Anything else in WakeDock's cookie is refused by the edge itself (exclusions.py).
        refused = http.get("/", headers={"Host": "vault.localhost", "Cookie": "wakedock_proxy=x"})
        assert refused.status_code == 403
        # The access check is internal to the edge.
        assert (
            http.get("/_wakedock/edge-auth", headers={"Host": "vault.localhost"}).status_code == 404
        )
