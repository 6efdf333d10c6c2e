"""The proxy's upstream client against real HTTP servers on 127.0.0.1: keep-alive reuse, stale
connections, early answers, streaming both ways, framing corner cases, errors and timeouts.

The upstream here is a small asyncio HTTP/1.1 server written for the test, so that it can do
what real applications do at the edges (answer before reading a body, close an idle
connection, drop a request) and count the connections it accepted."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.types import Message

from wakedock.proxy.upstream import (
    UpstreamClient,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)

Handler = Callable[["Request", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    number: int  # the how-many-th request on its connection (1 = first)


@dataclass
class Upstream:
    port: int
    accepted: int = 0
    seen: list[Request] = field(default_factory=list)
    idle_closed: asyncio.Event = field(default_factory=asyncio.Event)


async def _read_head(reader: asyncio.StreamReader, number: int) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers, number)


async def read_body(request: Request, reader: asyncio.StreamReader) -> bytes:
    if "content-length" in request.headers:
        return await reader.readexactly(int(request.headers["content-length"]))
    if request.headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
            if size == 0:
                return bytes(body)
    return b""


def answer(status: int, body: bytes = b"", *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _app(
    request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    """The routes the tests use; False closes the connection after the answer."""
    path, _, query = request.path.partition("?")
    if path == "/":
        writer.write(answer(200, b"hello"))
    elif path == "/early":  # refuses the body without reading it, then closes
        writer.write(answer(413, b"too big for me", "connection: close"))
        await writer.drain()
        return False
    elif path == "/echo":  # the body back, chunk-encoded, in 64 KiB pieces as it arrives
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        body = await read_body(request, reader)
        for start in range(0, len(body), 65536):
            piece = body[start : start + 65536]
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    elif path == "/big":
        size = int(query)
        writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n".encode())
        for start in range(0, size, 1 << 20):
            writer.write(b"b" * min(1 << 20, size - start))
            await writer.drain()
    elif path == "/then-408":  # later, on the idle connection, a 408 no request asked for
        writer.write(answer(200, b"hello"))
        asyncio.get_running_loop().call_later(0.1, writer.write, answer(408, b"idle too long"))
    elif path == "/head-with-body":  # a broken app: a body to a HEAD request
        writer.write(answer(200, b"stray"))
    elif path == "/head":
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\n")
    elif path == "/204":
        writer.write(b"HTTP/1.1 204 No Content\r\nx-kind: none\r\n\r\n")
    elif path == "/304":
        writer.write(b'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 9\r\n\r\n')
    elif path == "/continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await read_body(request, reader)
        writer.write(answer(201, b"got %d" % len(body)))
    elif path == "/error":
        writer.write(answer(500, b"boom: the app failed", "Content-Type: text/plain"))
    elif path == "/slow":
        await asyncio.sleep(30)
    elif path == "/close":
        writer.write(answer(200, b"bye", "connection: close"))
        await writer.drain()
        return False
    elif path == "/until-close":  # HTTP/1.0 style: no length, the end of the body is the close
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()
        return False
    elif path == "/headers":
        listed = "".join(f"{k}={v};" for k, v in sorted(request.headers.items()))
        writer.write(
            answer(200, listed.encode(), "connection: keep-alive, x-private", "x-private: 1")
        )
    else:
        writer.write(answer(404, b"no such route"))
    await writer.drain()
    return True


@asynccontextmanager
async def upstream(
    *, close_idle: bool = False, drop_second: bool = False, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Upstream]:
    """A server on `host`, on `port` or a free one. `close_idle`: it closes each connection
    after answering (keeping it open as far as the client knows), like an upstream whose
    keep-alive timeout passed.
    `drop_second`: it reads a connection's second request and closes without answering."""
    state = Upstream(port=0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.accepted += 1
        number = 0
        try:
            while True:
                number += 1
                request = await _read_head(reader, number)
                if request is None:
                    return
                state.seen.append(request)
                if drop_second and number == 2:
                    return
                if not await _app(request, reader, writer):
                    return
                if close_idle:
                    await asyncio.sleep(0)
                    return
        except ConnectionError:
            return
        finally:
            writer.close()
            if close_idle:
                state.idle_closed.set()

    server = await asyncio.start_server(serve, host, port, backlog=512)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state


@dataclass
class Visitor:
    """The ASGI side: what the visitor sent and what it got back."""

    body: list[bytes] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)

    async def receive(self) -> Message:
        if not self.body:
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = self.body.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.body)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def content(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def fetch(
    client: UpstreamClient,
    port: int,
    path: str,
    method: str = "GET",
    body: list[bytes] | None = None,
    *,
    chunked: bool = False,
    host: str = "127.0.0.1",
    **headers: str,
) -> Visitor:
    visitor = Visitor(body=list(body or []))
    sent_headers = [(b"host", b"app.localhost")]
    if body is not None and not chunked:
        sent_headers.append((b"content-length", str(sum(map(len, body))).encode()))
    sent_headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await client.forward(
        host,
        port,
        method=method,
        target=path.encode(),
        headers=sent_headers,
        receive=visitor.receive if body is not None else None,
        chunked=chunked,
        send=visitor.send,
    )
    return visitor


def run(test: Callable[[UpstreamClient], Awaitable[Any]], **options: Any) -> Any:
    async def main() -> Any:
        client = UpstreamClient(timeout_s=options.pop("timeout_s", 10.0), **options)
        try:
            return await test(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_sequential_requests_reuse_one_connection() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            for _ in range(5):
                reply = await fetch(client, server.port, "/")
                assert (reply.status, reply.content) == (200, b"hello")
            assert server.accepted == 1
            assert client.idle_count("127.0.0.1", server.port) == 1

    run(scenario)


def test_concurrent_requests_keep_as_many_connections_as_they_needed() -> None:
    """64 at once open up to 64 connections; all stay pooled and serve the next 64 at once."""

    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            replies = await asyncio.gather(*(fetch(client, server.port, "/") for _ in range(64)))
            assert all(r.content == b"hello" for r in replies)
            opened = server.accepted
            assert client.idle_count("127.0.0.1", server.port) == opened
            await asyncio.gather(*(fetch(client, server.port, "/") for _ in range(opened)))
            assert server.accepted == opened

    run(scenario)


def test_idle_connections_beyond_the_bound_are_closed() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            await asyncio.gather(*(fetch(client, server.port, "/") for _ in range(16)))
            assert client.idle_count("127.0.0.1", server.port) == 4

    run(scenario, max_idle=4)


def test_an_expired_idle_connection_is_not_reused() -> None:
    now = [0.0]

    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            await fetch(client, server.port, "/")
            now[0] += 60
            assert (await fetch(client, server.port, "/")).content == b"hello"
            assert server.accepted == 2

    run(scenario, idle_expiry_s=15, clock=lambda: now[0])


def test_a_connection_the_upstream_closed_while_idle_is_replaced() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream(close_idle=True) as server:
            assert (await fetch(client, server.port, "/")).content == b"hello"
            await server.idle_closed.wait()
            reply = await fetch(client, server.port, "/")
            assert (reply.status, reply.content) == (200, b"hello")
            assert server.accepted == 2

    run(scenario)


def test_bytes_an_idle_connection_received_are_not_taken_for_the_next_answer() -> None:
    """Some servers write a 408 on a keep-alive connection they are about to drop: the next
    request must not get it as its answer, but go on a fresh connection."""

    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            assert (await fetch(client, server.port, "/then-408")).content == b"hello"
            await asyncio.sleep(0.3)
            reply = await fetch(client, server.port, "/")
            assert (reply.status, reply.content) == (200, b"hello")
            assert server.accepted == 2

    run(scenario)


def test_a_kept_alive_connection_dropped_on_reuse_is_retried_for_a_get_only() -> None:
    """The upstream closes a reused connection without answering (its keep-alive timeout hit
    just as the request went): a GET is sent again on a fresh connection; a POST whose body
    was already taken from the visitor cannot be, and fails as a 502 would."""

    async def scenario(client: UpstreamClient) -> None:
        async with upstream(drop_second=True) as server:
            await fetch(client, server.port, "/")
            reply = await fetch(client, server.port, "/")
            assert (reply.status, reply.content) == (200, b"hello")
            assert server.accepted == 2
            with pytest.raises(UpstreamError):
                await fetch(client, server.port, "/echo", "POST", [b"data"])

    run(scenario)


@pytest.mark.parametrize("size", [0, 64 * 1024, 4 * 2**20])
def test_an_early_answer_before_the_body_was_read_reaches_the_visitor(size: int) -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            body = [b"x" * 65536] * (size // 65536) + ([b"x" * size] if size < 65536 else [])
            reply = await fetch(client, server.port, "/early", "POST", body)
            assert (reply.status, reply.content) == (413, b"too big for me")
            assert (await fetch(client, server.port, "/")).content == b"hello"

    run(scenario)


def test_a_chunked_request_body_is_streamed_chunked_and_the_chunked_answer_back() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            pieces = [b"first,", b"second,", b"third"]
            reply = await fetch(client, server.port, "/echo", "POST", pieces, chunked=True)
            assert (reply.status, reply.content) == (200, b"first,second,third")
            assert server.seen[-1].headers["transfer-encoding"] == "chunked"
            assert b"transfer-encoding" not in reply.headers  # the visitor's server re-frames
            assert reply.sent[-1]["more_body"] is False

    run(scenario)


def test_ten_mebibytes_each_way_stream_in_pieces() -> None:
    size = 10 * 2**20

    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            body = [bytes([n % 251]) * 65536 for n in range(size // 65536)]
            echoed = await fetch(client, server.port, "/echo", "POST", body)
            assert echoed.content == b"".join(body)
            assert server.seen[-1].headers["content-length"] == str(size)
            big = await fetch(client, server.port, f"/big?{size}")
            assert big.content == b"b" * size
            assert big.headers[b"content-length"] == str(size).encode()
            assert len(big.sent) > 10  # streamed, not one buffered message
            assert server.accepted == 1

    run(scenario)


def test_head_204_and_304_answers_have_no_body_and_keep_the_connection() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            head = await fetch(client, server.port, "/head", "HEAD")
            assert head.status == 200 and head.content == b""
            assert head.headers[b"content-length"] == b"5"
            empty = await fetch(client, server.port, "/204")
            assert (empty.status, empty.content, empty.headers[b"x-kind"]) == (204, b"", b"none")
            cached = await fetch(client, server.port, "/304")
            assert (cached.status, cached.content) == (304, b"")
            assert (await fetch(client, server.port, "/")).content == b"hello"
            assert server.accepted == 1

    run(scenario)


def test_a_connection_with_bytes_beyond_the_answer_is_not_reused() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            head = await fetch(client, server.port, "/head-with-body", "HEAD")
            assert (head.status, head.content) == (200, b"")
            assert (await fetch(client, server.port, "/")).content == b"hello"
            assert server.accepted == 2

    run(scenario)


def test_an_informational_answer_is_skipped_for_the_final_one() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            reply = await fetch(
                client, server.port, "/continue", "POST", [b"abc"], expect="100-continue"
            )
            assert (reply.status, reply.content) == (201, b"got 3")
            assert [m["type"] for m in reply.sent].count("http.response.start") == 1

    run(scenario)


def test_an_upstream_error_status_passes_through_with_its_body_and_headers() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            reply = await fetch(client, server.port, "/error")
            assert (reply.status, reply.content) == (500, b"boom: the app failed")
            assert reply.headers[b"content-type"] == b"text/plain"  # names lowercased (ASGI)

    run(scenario)


def test_connection_close_is_honoured_and_a_body_until_close_is_read_whole() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            assert (await fetch(client, server.port, "/close")).content == b"bye"
            assert client.idle_count("127.0.0.1", server.port) == 0
            assert (await fetch(client, server.port, "/until-close")).content == b"all of it"
            assert (await fetch(client, server.port, "/")).content == b"hello"
            assert server.accepted == 3

    run(scenario)


def test_hop_by_hop_headers_of_the_answer_are_stripped() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            reply = await fetch(client, server.port, "/headers", x_app="kept")
            assert b"connection" not in reply.headers and b"x-private" not in reply.headers
            assert b"x-app=kept;" in reply.content and b"host=app.localhost;" in reply.content

    run(scenario)


def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    async def scenario(client: UpstreamClient) -> None:
        with pytest.raises(UpstreamConnectError):
            await fetch(client, closed_port, "/")

    run(scenario)


def test_an_upstream_slower_than_the_timeout_is_a_timeout_error() -> None:
    async def scenario(client: UpstreamClient) -> None:
        async with upstream() as server:
            visitor = Visitor()
            with pytest.raises(UpstreamTimeout):
                await client.forward(
                    "127.0.0.1",
                    server.port,
                    method="GET",
                    target=b"/slow",
                    headers=[(b"host", b"app.localhost")],
                    receive=None,
                    chunked=False,
                    send=visitor.send,
                )
            assert visitor.sent == []
            assert client.idle_count("127.0.0.1", server.port) == 0

    run(scenario, timeout_s=0.3)


class SlowResolver:
    """The loop's resolver made slow and narrow, as a busy container's is: one thread, `delay`
    seconds a lookup. `answers[name]` gives the addresses a name resolves to, in order."""

    def __init__(self, delay: float, answers: dict[str, list[str]]) -> None:
        self.delay = delay
        self.answers = answers
        self.lookups = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="slow-resolver")

    def install(self) -> None:
        asyncio.get_running_loop().getaddrinfo = self.getaddrinfo  # type: ignore[method-assign]

    def _resolve(self, host: str, port: int) -> list[Any]:
        time.sleep(self.delay)
        found: list[Any] = []
        for address in self.answers[host]:
            found += socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
        return found

    async def getaddrinfo(self, host: str, port: int, **_: Any) -> list[Any]:
        self.lookups += 1
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._resolve, host, port
        )


def test_a_burst_of_new_connections_to_a_name_shares_one_lookup() -> None:
    """200 visitors released together by a wake, the upstream a container's name, the resolver
    taking 50 ms a lookup on one thread: every visitor is answered within the 1 s connect
    timeout (200 lookups in a queue would take 10 s)."""
    resolver = SlowResolver(0.05, {"app.internal": ["127.0.0.1"]})

    async def scenario(client: UpstreamClient) -> None:
        resolver.install()
        async with upstream() as server:
            replies = await asyncio.gather(
                *(fetch(client, server.port, "/", host="app.internal") for _ in range(200))
            )
            assert [r.content for r in replies] == [b"hello"] * 200
            assert server.accepted > 1  # new connections, not one reused
            assert resolver.lookups == 1

    run(scenario, connect_timeout_s=1.0)


def test_a_name_is_looked_up_again_once_its_time_is_over() -> None:
    now = [0.0]
    resolver = SlowResolver(0, {"app.internal": ["127.0.0.1"]})

    async def scenario(client: UpstreamClient) -> None:
        resolver.install()
        async with upstream(close_idle=True) as server:  # each request on a new connection
            for _ in range(3):
                assert (await fetch(client, server.port, "/", host="app.internal")).status == 200
            assert (server.accepted, resolver.lookups) == (3, 1)
            now[0] += 2.5
            assert (await fetch(client, server.port, "/", host="app.internal")).status == 200
            assert (server.accepted, resolver.lookups) == (4, 2)

    run(scenario, name_ttl_s=2.0, clock=lambda: now[0])


def test_a_name_whose_address_refuses_is_looked_up_again_at_once() -> None:
    """A Swarm task replaced by one at another address: the old address refuses, the visitor
    gets a connect error (the proxy wakes the service again), and the next connection asks the
    resolver anew instead of trying the dead address until the name's time is over."""
    resolver = SlowResolver(0, {"app.internal": ["127.0.0.2"]})

    async def scenario(client: UpstreamClient) -> None:
        resolver.install()
        async with upstream() as server:
            with pytest.raises(UpstreamConnectError):
                await fetch(client, server.port, "/", host="app.internal")
            resolver.answers["app.internal"] = ["127.0.0.1"]
            assert (await fetch(client, server.port, "/", host="app.internal")).status == 200
            assert resolver.lookups == 2

    run(scenario, name_ttl_s=60.0)


def test_the_addresses_of_a_name_take_new_connections_in_turn() -> None:
    """A Swarm service with two tasks (dnsrr: the name gives both): new connections go to
    each in turn, not all to the first address of one cached answer."""
    resolver = SlowResolver(0, {"app.internal": ["127.0.0.1", "127.0.0.2"]})

    async def scenario(client: UpstreamClient) -> None:
        resolver.install()
        async with (
            upstream(close_idle=True) as first,
            upstream(close_idle=True, host="127.0.0.2", port=first.port) as second,
        ):
            for _ in range(6):
                reply = await fetch(client, first.port, "/", host="app.internal")
                assert reply.status == 200
            assert (first.accepted, second.accepted, resolver.lookups) == (3, 3, 1)

    run(scenario, name_ttl_s=60.0)
