"""The edge's direct routes with a real nginx + ModSecurity + CRS: what nginx itself does.

Two small HTTP servers on loopback stand on either side: a service that records what reaches it
(and answers its own 502, or dies after reading a body), and a stand-in for WakeDock that
records what falls back to it and answers the edge's access check from the cookie. The whole
thing with a real `wakedock serve` and Docker is in test_direct_engine.py.
"""

from __future__ import annotations

import http.client
import os
import pwd
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support.server import HOST, free_port
from wakedock.config import Settings
from wakedock.edge.render import EdgeOptions, render_edge, write_edge
from wakedock.edge.routes import DirectRoute
from wakedock.edge.supervisor import check_config, nginx_command
from wakedock.proxy.edge_activity import activity_socket, parse_host
from wakedock.services.snapshots import ServiceView
from wakedock.services.spec import ServiceSpec

pytestmark = pytest.mark.integration


def token_shaped(claims: str) -> str:
    """A value shaped like WakeDock's service host cookie (an HS256 JWT, exclusions.py), not
    signed: the stand-in below tells them apart by their claims part."""
    return f"eyJhbGciOiJIUzI1NiIsImtpZCI6I{'k' * 41}.eyJ{claims}.{'s' * 43}"


# The stand-in's admitted visitor and its signed-in one of another role. Both have `--`
# followed later by `-` in them (as about one real token in 500 does, in its signature):
# CRS 942440 reads that as an SQL comment.
GOOD = token_shaped("Z29vZC--IsInJvbGUiOi-ZpZXdlciJ9")
OTHER_ROLE = token_shaped("b3RoZXI--IsInJvbGUiOi-Jub25lIn0")
# The address the stand-in's network filter refuses (another loopback address of this host).
DENIED_ADDRESS = "127.0.0.2"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """An HTTP server on loopback that records each request and answers by path."""

    name: str
    requests: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    # The stand-in's access checks wait while it is clear; GOOD's session once revoked.
    checks_open: threading.Event = field(default_factory=threading.Event)
    revoked: bool = False
    # The client address of each access check (X-Forwarded-For, as nginx sets it).
    checked_from: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.checks_open.set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorder.requests.append(
                Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status, text = self._decide()
            if status == 0:  # the service dies mid-request: the connection just closes
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _decide(self) -> tuple[int, str]:
            path = self.path
            if recorder.name == "wakedock":
                if path == "/_wakedock/edge-auth":
                    recorder.checks_open.wait(30)
                    recorder.checked_from.append(self.headers.get("X-Forwarded-For") or "")
                    if (self.headers.get("Host") or "").startswith("filtered."):
                        # The zero-trust network filter of a public service: by address.
                        denied = self.headers.get("X-Forwarded-For") == DENIED_ADDRESS
                        return (403, "") if denied else (204, "")
                    cookie = self.headers.get("Cookie") or ""
                    if f"wakedock_proxy={GOOD}" in cookie and not recorder.revoked:
                        return 204, ""
                    return (403, "") if f"wakedock_proxy={OTHER_ROLE}" in cookie else (401, "")
                return 200, f"wakedock {self.command} {path}"
            if path == "/own-502":
                return 502, "the service's own 502"
            if path == "/dies":
                return 0, ""
            if path == "/slow":
                time.sleep(3)
            return 200, f"service {self.command} {path}"

        do_GET = do_POST = do_HEAD = do_PUT = _answer

    return Handler


def _serve(recorder: Recorder) -> Iterator[Recorder]:
    server = ThreadingHTTPServer((HOST, 0), _handler(recorder))
    server.daemon_threads = True
    recorder.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def service() -> Iterator[Recorder]:
    yield from _serve(Recorder("service"))


@pytest.fixture
def wakedock() -> Iterator[Recorder]:
    yield from _serve(Recorder("wakedock"))


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1",
         "-addext", "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _view(name: str, policy: str = "public", *, network_filter: bool = False) -> ServiceView:
    now = datetime.now(UTC)
    spec = ServiceSpec.model_validate(
        {
            "name": name,
            "image": "nginx:1",
            "ports": [{"container_port": 80}],
            "readiness": {"type": "tcp", "port": 80},
            "access": {"policy": policy, "network_filter": network_filter},
        }
    )
    return ServiceView(
        id=1, name=name, owner_id=None, source="api", spec=spec, writable_root_granted=False,
        runtime="engine", container_ref="c", state="running", stop_reason=None, created_at=now,
        updated_at=now, last_started_at=now, last_stopped_at=None,
    )  # fmt: skip


@dataclass
class Edge:
    port: int
    cert: Path
    activity: socket.socket

    def request(
        self,
        host: str,
        method: str = "GET",
        path: str = "/",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        source: str = HOST,
    ) -> tuple[int, dict[str, str], bytes]:
        context = ssl.create_default_context(cafile=str(self.cert))
        connection = http.client.HTTPSConnection(
            HOST, self.port, context=context, timeout=30, source_address=(source, 0)
        )
        try:
            connection.request(
                method,
                path,
                body=body,
                headers={"Host": host, "User-Agent": "tests", **(headers or {})},
            )
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def activity_hosts(self, wait: float = 1.0) -> list[str]:
        """The hosts nginx logged to the activity socket since the last call."""
        hosts: list[str] = []
        self.activity.settimeout(wait)
        while True:
            try:
                datagram = self.activity.recv(4096)
            except TimeoutError:
                return hosts
            host = parse_host(datagram)
            assert host is not None, datagram
            hosts.append(host)
            self.activity.settimeout(0.3)


def _activity_listener(path: Path) -> socket.socket:
    """The socket as `wakedock serve` makes it (proxy/edge_activity.py), read by the test."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener.bind(str(path))
    if os.geteuid() == 0:  # nginx's workers run as nobody
        gid = pwd.getpwnam("nobody").pw_gid
        os.chown(path.parent, 0, gid)
        os.chmod(path.parent, 0o710)  # noqa: S103 - as WakeDock does
        os.chown(path, 0, gid)
        os.chmod(path, 0o660)
    return listener


@pytest.fixture
def edge(tmp_path: Path, nginx: Path, service: Recorder, wakedock: Recorder) -> Iterator[Edge]:
    cert, key = _certificate(tmp_path)
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    settings = Settings(
        data_dir=data_dir,
        server={"port": wakedock.port},
        proxy={"upstream_timeout_seconds": 1},
        edge={"direct_routes": True, "auth_cache_seconds": 5},
    )
    options = EdgeOptions(
        out_dir=tmp_path / "edge",
        cert=cert,
        key=key,
        wakedock_ca=cert,
        listen=f"{HOST}:{port}",
        wakedock_http=True,
    )
    views = [_view("app"), _view("private", "authenticated"), _view("asleep"), _view("gone"),
             _view("filtered", network_filter=True)]  # fmt: skip
    routes = {
        "app": DirectRoute(HOST, service.port),
        "private": DirectRoute(HOST, service.port),
        "filtered": DirectRoute(HOST, service.port),
        # Still routed, but nothing listens there any more (a stop the edge has not seen yet).
        "gone": DirectRoute(HOST, free_port()),
    }
    config = render_edge(settings, views, options, routes)
    write_edge(config)
    check_config(nginx, config)
    # WakeDock's side of the activity socket (proxy/edge_activity.py), read by the test.
    listener = _activity_listener(activity_socket(data_dir))
    process = subprocess.Popen(nginx_command(nginx, config))
    edge = Edge(port, cert, listener)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield edge
    finally:
        process.terminate()
        process.wait(30)
        listener.close()


def test_an_awake_service_is_proxied_directly_with_the_forwarding_headers(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    status, headers, body = edge.request(
        "app.localhost",
        path="/hello?x=1",
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "Forwarded": "for=203.0.113.9",
            "Cookie": "theirs=1; wakedock_proxy=secret; __Host-wakedock_proxy=secret2; mine=2",
        },
    )
    assert (status, body) == (200, b"service GET /hello?x=1")
    assert wakedock.requests == []
    seen = service.requests[-1]
    assert seen.headers["x-forwarded-for"] == HOST  # replaced, not appended to
    assert seen.headers["x-forwarded-proto"] == "https"
    assert seen.headers["x-forwarded-host"] == "app.localhost"
    assert seen.headers["host"] == "app.localhost"
    assert "forwarded" not in seen.headers
    # WakeDock's service host cookies never reach the service; its own do.
    assert "secret" not in seen.headers["cookie"]
    assert "theirs=1" in seen.headers["cookie"] and "mine=2" in seen.headers["cookie"]
    assert headers["strict-transport-security"].startswith("max-age=")
    # One line per direct request on the activity socket.
    assert edge.activity_hosts() == ["app.localhost"]


def test_a_public_services_network_filter_is_asked_per_address_and_a_deny_is_wakedocks(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    """A public service with the zero-trust network filter: nginx asks WakeDock's access
    check before each direct request; its answer is kept per address, so an admitted
    address's decision never admits another one, and a refused visitor gets WakeDock's answer
    while the service sees nothing of it."""
    assert edge.request("filtered.localhost")[::2] == (200, b"service GET /")
    assert edge.request("filtered.localhost", source=DENIED_ADDRESS)[::2] == (
        200,
        b"wakedock GET /",  # WakeDock's answer (its 403 page, in real life)
    )
    assert [f"{r.method} {r.path}" for r in service.requests] == ["GET /"]
    assert wakedock.checked_from == [HOST, DENIED_ADDRESS]
    # Kept per address: the admitted one again is not asked, nor let through for the other.
    assert edge.request("filtered.localhost")[::2] == (200, b"service GET /")
    assert edge.request("filtered.localhost", source=DENIED_ADDRESS)[0] == 200
    assert wakedock.checked_from == [HOST, DENIED_ADDRESS]
    assert len(service.requests) == 2
    # A public service without the filter is never checked.
    assert edge.request("app.localhost")[::2] == (200, b"service GET /")
    assert wakedock.checked_from == [HOST, DENIED_ADDRESS]


def test_the_services_own_502_passes_through_unchanged(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    status, _, body = edge.request("app.localhost", path="/own-502")
    assert (status, body) == (502, b"the service's own 502")
    assert service.paths() == ["GET /own-502"]  # once: not retried
    assert wakedock.requests == []


def test_a_sleeping_service_and_an_unreachable_route_fall_back_to_wakedock(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    status, _, body = edge.request("asleep.localhost", path="/page")
    assert (status, body) == (200, b"wakedock GET /page")
    # The route's port refuses: nothing reached a service, so even a POST goes to WakeDock,
    # body and all (it wakes the service and sends it there).
    status, _, body = edge.request("gone.localhost", path="/page")
    assert (status, body) == (200, b"wakedock GET /page")
    status, _, body = edge.request(
        "gone.localhost", "POST", "/form", {"Content-Type": "application/json"}, b'{"a": "hello"}'
    )
    assert (status, body) == (200, b"wakedock POST /form")
    assert wakedock.requests[-1].body == b'{"a": "hello"}'
    assert service.requests == []
    assert edge.activity_hosts(wait=0.5) == []  # fell back: WakeDock counts these itself


def test_a_request_that_may_have_reached_the_service_is_not_replayed(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    # The service read the POST and died: nginx answers 502 itself, WakeDock never sees it.
    status, _, _ = edge.request(
        "app.localhost", "POST", "/dies", {"Content-Type": "application/json"}, b'{"pay": 1}'
    )
    assert status == 502
    assert service.paths() == ["POST /dies"]
    assert wakedock.requests == []
    # Too slow for the upstream timeout (1 s here): 504, not replayed either.
    status, _, _ = edge.request(
        "app.localhost", "PUT", "/slow", {"Content-Type": "application/json"}, b"{}"
    )
    assert status == 504
    assert service.paths() == ["POST /dies", "PUT /slow"]
    assert wakedock.requests == []
    # A GET is repeated through WakeDock, as WakeDock's own proxy repeats it.
    status, _, body = edge.request("app.localhost", path="/dies")
    assert (status, body) == (200, b"wakedock GET /dies")


def test_websockets_and_event_streams_go_through_wakedock(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    status, _, body = edge.request("app.localhost", path="/socket", headers=upgrade)
    assert (status, body) == (200, b"wakedock GET /socket")
    stream = {"Accept": "text/event-stream"}
    status, _, body = edge.request("app.localhost", path="/events", headers=stream)
    assert (status, body) == (200, b"wakedock GET /events")
    # WakeDock's own paths on the service host too.
    status, _, body = edge.request("app.localhost", path="/_wakedock/status")
    assert (status, body) == (200, b"wakedock GET /_wakedock/status")
    assert service.requests == []


def test_a_protected_service_asks_wakedock_and_caches_its_answer(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    # No cookie: WakeDock answers (its sign-in redirect, in the real thing).
    status, _, body = edge.request("private.localhost", path="/doc")
    assert (status, body) == (200, b"wakedock GET /doc")
    # A cookie WakeDock admits: served directly, the decision asked once for both requests.
    good = {"Cookie": f"wakedock_proxy={GOOD}"}
    for _ in range(2):
        status, _, body = edge.request("private.localhost", path="/doc", headers=good)
        assert (status, body) == (200, b"service GET /doc")
    # Signed in with a role the service does not admit: WakeDock answers (its 403 page), the
    # refusal cached too.
    for _ in range(2):
        status, _, body = edge.request(
            "private.localhost", path="/doc", headers={"Cookie": f"wakedock_proxy={OTHER_ROLE}"}
        )
        assert (status, body) == (200, b"wakedock GET /doc")
    checks = [r for r in wakedock.requests if r.path == "/_wakedock/edge-auth"]
    assert [r.headers.get("cookie") for r in checks] == [
        None,
        f"wakedock_proxy={GOOD}",
        f"wakedock_proxy={OTHER_ROLE}",
    ]
    assert all(r.method == "GET" and r.body == b"" for r in checks)
    assert service.paths() == ["GET /doc", "GET /doc"]
    # The check cannot be asked from outside, and a WAF block stays nginx's own 403.
    status, _, _ = edge.request("private.localhost", path="/_wakedock/edge-auth", headers=good)
    assert status == 404
    status, headers, _ = edge.request(
        "private.localhost", path="/doc?q=<script>alert(1)</script>", headers=good
    )
    assert status == 403
    assert headers["server"] == "nginx"
    assert service.paths() == ["GET /doc", "GET /doc"]


@pytest.mark.security
@pytest.mark.parametrize(
    "cookie",
    [
        # In WakeDock's service host cookie: not a token, so refused before any CRS rule.
        "wakedock_proxy=1' OR '1'='1' --",
        "wakedock_proxy=<script>alert(1)</script>",
        f"wakedock_proxy={GOOD}'; DROP TABLE users; --",
        f"wakedock_proxy={GOOD}; wakedock_proxy=<img src=x onerror=alert(1)>",
        # Beside it, in a cookie of the service's: the CRS reads it as ever.
        f"wakedock_proxy={GOOD}; theirs=1' OR '1'='1' --",
        f"theirs=<script>alert(1)</script>; wakedock_proxy={GOOD}",
        # WakeDock's cookie under its other name is any other cookie here.
        f"wakedock_proxy={GOOD}; __Host-wakedock_proxy=1' OR '1'='1' --",
    ],
)
def test_an_attack_in_or_beside_wakedocks_cookie_is_refused_at_the_edge(
    edge: Edge, service: Recorder, wakedock: Recorder, cookie: str
) -> None:
    status, headers, _ = edge.request("private.localhost", path="/doc", headers={"Cookie": cookie})
    assert status == 403
    assert headers["server"] == "nginx"  # the WAF's own answer
    assert service.requests == []
    assert wakedock.requests == []  # not even the access check


@pytest.mark.security
def test_wakedocks_token_passes_the_crs_and_never_reaches_the_service(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    # GOOD has `--` then `-` in it: the CRS alone refused about one real token in 500.
    status, _, body = edge.request(
        "private.localhost", path="/doc", headers={"Cookie": f"theirs=1; wakedock_proxy={GOOD}"}
    )
    assert (status, body) == (200, b"service GET /doc")
    assert "wakedock_proxy" not in service.requests[-1].headers["cookie"]
    assert "theirs=1" in service.requests[-1].headers["cookie"]
    # A public service's host has no such exclusion: there the CRS reads that cookie too.
    status, _, _ = edge.request("app.localhost", headers={"Cookie": f"wakedock_proxy={GOOD}"})
    assert status == 403


def test_an_expired_decision_is_asked_again_without_holding_other_visitors(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    good = {"Cookie": f"wakedock_proxy={GOOD}"}
    assert edge.request("private.localhost", path="/a", headers=good)[0] == 200
    time.sleep(6.5)  # the fixture's edge.auth_cache_seconds, + 1 s (nginx counts whole seconds)
    # The first request after expiry asks WakeDock again; WakeDock is slow to answer.
    wakedock.checks_open.clear()
    first: list[int] = []
    asking = threading.Thread(
        target=lambda: first.append(edge.request("private.localhost", path="/b", headers=good)[0])
    )
    asking.start()
    try:
        deadline = time.monotonic() + 10
        while len([r for r in wakedock.requests if r.path == "/_wakedock/edge-auth"]) < 2:
            assert time.monotonic() < deadline, wakedock.paths()
            time.sleep(0.05)
        # Another request meanwhile is served on the expired decision, not held behind the
        # check (nginx's cache lock held it up to its 5 s timeout).
        answer: list[int] = []
        meanwhile = threading.Thread(
            target=lambda: answer.append(
                edge.request("private.localhost", path="/c", headers=good)[0]
            )
        )
        meanwhile.start()
        meanwhile.join(20)
        assert answer == [200]
        assert "GET /c" in service.paths() and "GET /b" not in service.paths()
    finally:
        wakedock.checks_open.set()
        asking.join(30)
    assert first == [200]


def test_a_revoked_session_is_refused_once_the_decision_expires(
    edge: Edge, service: Recorder, wakedock: Recorder
) -> None:
    good = {"Cookie": f"wakedock_proxy={GOOD}"}
    assert edge.request("private.localhost", path="/doc", headers=good)[:3:2] == (
        200,
        b"service GET /doc",
    )
    wakedock.revoked = True
    time.sleep(6.5)  # the fixture's edge.auth_cache_seconds, + 1 s (nginx counts whole seconds)
    # The first request after expiry gets WakeDock's fresh answer: handed to WakeDock.
    status, _, body = edge.request("private.localhost", path="/doc", headers=good)
    assert (status, body) == (200, b"wakedock GET /doc")
    assert service.paths() == ["GET /doc"]


def _post_over_http2(
    edge: Edge, host: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    """A POST over HTTP/2 (curl; the standard library speaks HTTP/1.1 only). The fixture's
    certificate names localhost only: not checked here."""
    done = subprocess.run(
        ["curl", "--http2", "-sS", "--max-time", "60", "--insecure",
         "--resolve", f"{host}:{edge.port}:{HOST}", "--data-binary", "@-",
         "-o", "-", "-w", "\n%{http_code} %{http_version}",
         *(a for name, value in headers.items() for a in ("-H", f"{name}: {value}")),
         f"https://{host}:{edge.port}{path}"],
        input=body, capture_output=True, check=True, timeout=90,
    )  # fmt: skip
    answer, _, status_line = done.stdout.rpartition(b"\n")
    status, version = status_line.split()
    assert version == b"2", done.stdout
    return int(status), answer


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"text": "' + b"a" * (100 * 1024 - 12) + b'"}'),
        ("application/x-www-form-urlencoded", b"text=" + b"a" * (100 * 1024 - 5)),
    ],
)
def test_a_large_post_to_a_protected_service_gets_the_services_answer(
    edge: Edge, service: Recorder, wakedock: Recorder, content_type: str, body: bytes, http2: bool
) -> None:
    # ModSecurity-nginx #163: auth_request with a request body could hang (over HTTP/2 in the
    # report). 100 KiB, read by ModSecurity (under its 128 KiB limit), with the check asked
    # first and then cached.
    headers = {"Cookie": f"wakedock_proxy={GOOD}", "Content-Type": content_type, "Accept": "*/*"}
    for _attempt in range(2):
        if http2:
            status, answer = _post_over_http2(edge, "private.localhost", "/upload", headers, body)
        else:
            status, _, answer = edge.request("private.localhost", "POST", "/upload", headers, body)
        assert (status, answer) == (200, b"service POST /upload")
        assert service.requests[-1].body == body
    checks = [r for r in wakedock.requests if r.path == "/_wakedock/edge-auth"]
    assert len(checks) == 1 and checks[0].body == b""
