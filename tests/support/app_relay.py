"""The in-process tests' HTTP traffic through a real edge (WAKEDOCK_TEST_THROUGH_EDGE=1).

A test's `TestClient` runs WakeDock's ASGI app in its own process. To put the edge (nginx +
ModSecurity + OWASP CRS, `wakedock edge run`) between the two, the TestClient's transport is
patched: each HTTP request is sent over TLS to the edge, which inspects it and proxies it to
`AppRelay`, WakeDock's upstream as far as nginx knows; the relay answers it by handing the
test's own request to the TestClient's original transport (the test's app, its portal, its
client address), and the answer goes back through nginx (outbound rules, nginx's headers).

The app sees the request as the test wrote it (its Host, its client address, its
X-Forwarded-For), so the test's own assertions keep their meaning; what the edge adds is what
it refuses (a WAF block, a body over its limit) and what it writes on the way back. The body is
the one nginx forwarded. WebSocket sessions stay in process (TestClient's own protocol).
No pytest here.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from starlette.testclient import _TestClientTransport

from support.server import HOST

# Names the request in the relay's table; nginx passes it on untouched.
REQUEST_HEADER = "X-WakeDock-Test-Request"
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
_ORIGINAL = _TestClientTransport.handle_request
# A held request (a wake) may take a while; a test hanging on a lost answer may not.
_TIMEOUTS = {"connect": 30.0, "read": 300.0, "write": 60.0, "pool": 30.0}


@dataclass
class _Pending:
    transport: _TestClientTransport
    request: httpx.Request
    # What the test's app raised (TestClient re-raises server exceptions in the test).
    error: BaseException | None = None


class AppRelay:
    """WakeDock's upstream for the edge: a plain-HTTP listener on 127.0.0.1 that answers each
    request with the test's app, looked up by `REQUEST_HEADER`. A request without one (none of
    a test's) is answered 400."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.relayed = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def __getattr__(self, name: str) -> Any:
                # Every method nginx passes on (do_GET, do_PROPFIND...) is relayed alike.
                if name.startswith("do_"):
                    return lambda: relay._answer(self)
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: nginx's access log has every request."""

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def expect(
        self, transport: _TestClientTransport, request: httpx.Request
    ) -> tuple[str, _Pending]:
        key = secrets.token_hex(12)
        pending = _Pending(transport, request)
        with self._lock:
            self._pending[key] = pending
            self.relayed += 1
        return key, pending

    def forget(self, key: str) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        key = handler.headers.get(REQUEST_HEADER, "")
        with self._lock:
            pending = self._pending.pop(key, None)
        body = _read_body(handler)
        if pending is None:
            _write(handler, 400, [(b"content-type", b"text/plain")], b"not a test request\n")
            return
        original = pending.request
        headers = [
            (k, v)
            for k, v in original.headers.raw
            if k.lower() not in (b"transfer-encoding", b"content-length")
        ]
        if body or "content-length" in original.headers:
            headers.append((b"content-length", str(len(body)).encode()))
        request = httpx.Request(
            original.method, original.url, headers=headers, content=body or None
        )
        try:
            response = _ORIGINAL(pending.transport, request)
            # Raw: a gzip answer stays gzip (read() would decode it).
            content = b"".join(response.iter_raw())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test's thread
            pending.error = exc
            _write(handler, 500, [(b"content-type", b"text/plain")], b"the app raised\n")
            return
        _write(handler, response.status_code, list(response.headers.raw), content)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _write(
    handler: BaseHTTPRequestHandler,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    # send_response_only: no Server or Date of http.server's own (the app's answer is passed).
    handler.send_response_only(status)
    bodiless = handler.command == "HEAD" or status in (204, 304) or status < 200
    for name, value in headers:
        if name.lower() in _HOP_BY_HOP or (name.lower() == b"content-length" and not bodiless):
            continue
        handler.send_header(name.decode("latin-1"), value.decode("latin-1"))
    if not bodiless:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if not bodiless:
        handler.wfile.write(body)


@dataclass
class EdgeRoute:
    """Where the patched TestClient sends its requests: the edge's address, its CA, the relay."""

    address: str
    port: int
    context: ssl.SSLContext
    relay: AppRelay

    def __post_init__(self) -> None:
        self.transport = httpx.HTTPTransport(verify=self.context, retries=0)

    def send(self, client: _TestClientTransport, request: httpx.Request) -> httpx.Response:
        """`request` through the edge; nginx's answer (or the app's exception) for the test."""
        if request.url.scheme not in ("http", "https"):
            return _ORIGINAL(client, request)  # WebSocket: TestClient's own session
        body = request.read()
        key, pending = self.relay.expect(client, request)
        headers = [
            (k, v)
            for k, v in request.headers.raw
            if k.lower() not in (b"transfer-encoding", b"content-length")
        ]
        headers += [(REQUEST_HEADER.encode(), key.encode())]
        if body or "content-length" in request.headers:
            headers.append((b"content-length", str(len(body)).encode()))
        url = httpx.URL(f"https://{self.address}:{self.port}").copy_with(
            raw_path=request.url.raw_path
        )
        forwarded = httpx.Request(
            request.method, url, headers=headers, content=body or None,
            extensions={"timeout": _TIMEOUTS},
        )  # fmt: skip
        try:
            answer = self.transport.handle_request(forwarded)
            try:
                raw = b"".join(answer.iter_raw())
            finally:
                answer.close()
        finally:
            self.relay.forget(key)
        if pending.error is not None:
            raise pending.error
        kept = [(k, v) for k, v in answer.headers.raw if k.lower() not in _HOP_BY_HOP]
        # A ByteStream, as TestClient's own transport answers: decoded when the test reads it.
        return httpx.Response(
            answer.status_code, headers=kept, stream=httpx.ByteStream(raw), request=request
        )

    def close(self) -> None:
        self.transport.close()


@contextlib.contextmanager
def route_testclients(route: EdgeRoute) -> Any:
    """Every TestClient's HTTP requests through `route` while the context is open."""

    def handle_request(self: _TestClientTransport, request: httpx.Request) -> httpx.Response:
        return route.send(self, request)

    # Restores what was there (a session's own patch, when a test nests one inside it).
    before = _TestClientTransport.handle_request
    _TestClientTransport.handle_request = handle_request  # type: ignore[method-assign]
    try:
        yield route
    finally:
        _TestClientTransport.handle_request = before  # type: ignore[method-assign]
