"""The proxy's hop to an awake service: a lean HTTP/1.1 client on pooled, non-blocking sockets.

httpx/httpcore spent most of the event loop on bookkeeping a reverse proxy does not need (pool
scans, per-request imports, keep-alive churn: 20 idle connections for 64 concurrent visitors).
This client does only what the proxy needs (issue #14):

- one pool per upstream (host, port): idle connections are reused last-in first-out, as many are
  kept as were needed at once (up to `max_idle`), and an idle one expires after `idle_expiry_s`;
  one the upstream closed meanwhile is seen (a non-blocking peek) and dropped before reuse (also
  for requests that could be replayed: bytes it sent while idle, such as a late 408, must not
  pass for the next request's answer);
- the request head is written as one bytes object; a body is streamed, chunked upstream when the
  visitor gave no length; the answer is parsed by httptools and streamed to the ASGI `send`
  chunk by chunk;
- a connection is reused only after its answer was read completely and the upstream kept it
  open (no `Connection: close`, HTTP/1.1 framing);
- an upstream's name (a container's or a Swarm service's) is resolved once for all the
  connections opened to it within `name_ttl_s`, however many ask at once: the visitors held
  during a wake all connect when it ends, and 200 lookups queued on the loop's few resolver
  threads made the last ones miss the connect timeout. Several addresses (a Swarm service's
  tasks) are taken in turn; a name whose addresses refused or timed out is looked up again.

Plain sockets, not asyncio transports: an upstream may answer before reading the request body
(a 413 or 501 to a POST) and close; the proxy's next write then fails. A transport closes itself
on that failure and the answer waiting in the socket is lost (the visitor would get a 502); here
a failed write leaves the socket open and the upstream's own answer is read and passed on.
Upstreams are reached over plain TCP (loopback or a container network), never over TLS.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from starlette.types import Message, Receive, Send

# Replayed on a fresh connection when a kept-alive one turns out closed after the request went.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
READ_SIZE = 65536
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def strip_hop_by_hop(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers for the next hop: without those about this connection (RFC 9110 7.6.1), the
    fixed ones and any the `Connection` header names."""
    drop = HOP_BY_HOP
    for key, value in headers:
        if key.lower() == b"connection":
            drop = drop | {p.strip().lower() for p in value.split(b",") if p.strip()}
    return [(k, v) for k, v in headers if k.lower() not in drop]


class UpstreamError(Exception):
    """The upstream failed to answer (reset, closed early, malformed answer)."""


class UpstreamConnectError(UpstreamError):
    """No connection could be opened: nothing reached the upstream nor the visitor, so the
    caller may wake the service again and retry."""


class UpstreamTimeout(UpstreamError):
    """The upstream took longer than the configured timeout to connect, accept data or answer."""


class _Stale(Exception):
    """A reused connection failed before any byte of answer: the upstream had closed it.
    `written`: the request may have reached it (replayed only if idempotent)."""

    def __init__(self, written: bool) -> None:
        super().__init__()
        self.written = written


class _Connection:
    __slots__ = ("fd", "idle_since", "loop", "sock")

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.idle_since = 0.0

    def alive(self) -> bool:
        """Idle and still open: an idle connection has nothing to read; EOF, an error or stray
        bytes mean the upstream closed it (or broke it) while it waited in the pool."""
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    async def wait(self, *, writing: bool, timeout: float) -> None:
        """Until the socket is writable (`writing`) or readable, at most `timeout` seconds."""
        loop = self.loop
        ready: asyncio.Future[None] = loop.create_future()
        if writing:
            loop.add_writer(self.fd, _resolve, ready)
        else:
            loop.add_reader(self.fd, _resolve, ready)
        timer = loop.call_later(timeout, _expire, ready)
        try:
            await ready
        finally:
            timer.cancel()
            if writing:
                loop.remove_writer(self.fd)
            else:
                loop.remove_reader(self.fd)

    async def recv(self, timeout: float, *, wait_first: bool = False) -> bytes:
        """The next bytes the upstream sent; `wait_first`: none can have come yet (the request
        was just sent), so the socket is not tried before it is readable."""
        if wait_first:
            await self.wait(writing=False, timeout=timeout)
        while True:
            try:
                return self.sock.recv(READ_SIZE)
            except BlockingIOError:
                await self.wait(writing=False, timeout=timeout)

    async def send_all(self, data: bytes, timeout: float) -> None:
        """Write all of `data`. An error leaves the socket open: what the upstream answered
        before it stopped reading can still be read."""
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await self.wait(writing=True, timeout=timeout)
                continue
            view = view[sent:]

    def close(self) -> None:
        self.sock.close()


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _expire(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_exception(UpstreamTimeout("the service did not answer in time"))


class _Answer:
    """httptools callbacks collecting one answer; `drain` turns them into ASGI messages."""

    __slots__ = (
        "complete",
        "dirty",
        "ended",
        "head",
        "headers",
        "keep_alive",
        "messages",
        "parser",
        "started",
    )

    def __init__(self, head: bool) -> None:
        self.head = head  # the request was HEAD: the answer ends with its headers
        self.parser = HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.messages: list[Message] = []
        self.started = False  # the final (non-1xx) answer's headers were parsed
        self.complete = False
        self.dirty = False  # bytes beyond the answer: the connection cannot be reused
        self.ended = False  # the final body message was sent
        self.keep_alive = False  # the upstream keeps the connection open after this answer

    def on_message_begin(self) -> None:
        if self.complete:
            self.dirty = True
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        # ASGI wants lowercase names (the server's own checks, e.g. for `Date`, rely on it).
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return  # informational (100 Continue): the final answer follows
        if self.complete:
            return
        self.started = True
        # Now, not after the body: llhttp forgets the framing once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()
        self.messages.append(
            {"type": "http.response.start", "status": status, "headers": self.headers}
        )
        if self.head:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.dirty = True  # a body to a HEAD request, or a second answer
            return
        if body:
            self.messages.append({"type": "http.response.body", "body": body})

    def on_message_complete(self) -> None:
        if self.started and not self.complete:
            self.complete = True

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            # An upgrade was never asked for (WebSockets go through proxy/websocket.py).
            raise UpstreamError(f"malformed answer from the service: {exc!r}") from exc

    def ends_at_close(self) -> bool:
        """A final answer framed by the end of the connection (no length, not chunked)."""
        if not self.started or self.complete:
            return False
        framing = {name for name, _ in self.headers}
        return b"content-length" not in framing and b"transfer-encoding" not in framing


class UpstreamClient:
    """Forwards requests to upstreams over pooled HTTP/1.1 connections (one client per app).

    Pools belong to the event loop that opened them: a client used from another loop (a test
    client's portal) drops the idle sockets it cannot wait on there and starts afresh.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        connect_timeout_s: float = 5.0,
        max_idle: int = 256,
        idle_expiry_s: float = 15.0,
        name_ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout_s
        self._connect_timeout = connect_timeout_s
        self._max_idle = max_idle
        self._expiry = idle_expiry_s
        self._clock = clock
        self._names = _Names(name_ttl_s, clock)
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pruner: asyncio.TimerHandle | None = None
        self._closed = False

    def idle_count(self, host: str, port: int) -> int:
        return len(self._idle.get((host, port), ()))

    async def aclose(self) -> None:
        self._closed = True
        self._drop_all()

    async def forward(
        self,
        host: str,
        port: int,
        *,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        receive: Receive | None,
        chunked: bool,
        send: Send,
    ) -> None:
        """Send one request and stream the answer to `send`.

        `receive` gives the request body (None: the request has none); `chunked`: its length is
        unknown, so it goes upstream chunk-encoded. Raises UpstreamConnectError when no
        connection could be opened (nothing was sent to the visitor), UpstreamTimeout and
        UpstreamError otherwise (possibly mid-answer: the caller can only cut the connection).
        """
        lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
        lines += [name + b": " + value for name, value in headers]
        if chunked:
            lines.append(b"transfer-encoding: chunked")
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        key = (host, port)
        connection = self._take(key)
        if connection is not None:
            try:
                await self._exchange(key, connection, True, head, method, receive, chunked, send)
                return
            except _Stale as stale:
                if stale.written and method not in IDEMPOTENT:
                    raise UpstreamError("the service closed a kept-alive connection") from None
        connection = await self._connect(host, port)
        await self._exchange(key, connection, False, head, method, receive, chunked, send)

    async def _exchange(
        self,
        key: tuple[str, int],
        connection: _Connection,
        reused: bool,
        head: bytes,
        method: str,
        receive: Receive | None,
        chunked: bool,
        send: Send,
    ) -> None:
        """One request and its answer on `connection`; it goes back to the pool only if the
        answer was read completely and the upstream keeps it open; otherwise it is closed.

        On a `reused` connection, raises _Stale when it failed before any byte of answer and
        before any of the body was taken from the visitor (the request can be sent again)."""
        timeout = self._timeout
        answer = _Answer(method == "HEAD")
        reusable = False
        try:
            try:
                await connection.send_all(head, timeout)
                body_whole = True
            except OSError:
                if reused:
                    raise _Stale(written=False) from None
                body_whole = False
            if body_whole and receive is not None:
                try:
                    await self._send_body(connection, receive, chunked)
                except OSError:
                    # The upstream may have answered (and closed) before reading all of it.
                    body_whole = False
            replayable = reused and receive is None
            first = True
            while not answer.complete:
                try:
                    data = await connection.recv(timeout, wait_first=first)
                    first = False
                except OSError as exc:
                    if replayable:
                        raise _Stale(written=True) from None
                    raise UpstreamError(f"the service broke the connection: {exc}") from exc
                if not data:
                    if answer.ends_at_close():
                        answer.complete = True
                        answer.dirty = True
                        break
                    if replayable:
                        raise _Stale(written=True)
                    raise UpstreamError("the service closed the connection without answering")
                replayable = False
                answer.feed(data)
                await _drain(answer, send)
            await _drain(answer, send)
            reusable = body_whole and not answer.dirty and answer.keep_alive
        finally:
            if reusable:
                self._put(key, connection)
            else:
                connection.close()

    async def _send_body(self, connection: _Connection, receive: Receive, chunked: bool) -> None:
        """Stream the body after the head (an OSError: the upstream stopped reading it)."""
        timeout = self._timeout
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise UpstreamError("the visitor went away while sending the body")
            chunk: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            if chunked:
                data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunk else b""
                if not more:
                    data += b"0\r\n\r\n"
            else:
                data = chunk
            if data:
                await connection.send_all(data, timeout)
            if not more:
                return

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        """The most recently used idle connection to `key` still open and not past its expiry."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._drop_all()
            self._loop = loop
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self._clock()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self._expiry and connection.alive():
                return connection
            connection.close()
        return None

    def _put(self, key: tuple[str, int], connection: _Connection) -> None:
        if self._closed or connection.loop is not self._loop:
            connection.close()
            return
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = self._clock()
        idle.append(connection)
        if self._pruner is None:
            self._pruner = connection.loop.call_later(self._expiry, self._prune)

    def _prune(self) -> None:
        """Close idle connections past their expiry (the oldest are at the left end)."""
        self._pruner = None
        now = self._clock()
        self._names.prune(now)
        left = False
        for idle in self._idle.values():
            while idle and now - idle[0].idle_since >= self._expiry:
                idle.popleft().close()
            left = left or bool(idle)
        if left and self._loop is not None and not self._loop.is_closed():
            self._pruner = self._loop.call_later(self._expiry, self._prune)

    def _drop_all(self) -> None:
        self._names.clear()
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                addresses = await self._names.addresses(loop, host, port)
                last: OSError = OSError(f"no address for {host}")
                for family, address in addresses:
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    try:
                        sock.setblocking(False)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        await loop.sock_connect(sock, address)
                    except OSError as exc:
                        sock.close()
                        last = exc
                        continue
                    except BaseException:
                        sock.close()
                        raise
                    return _Connection(sock, loop)
                raise last
        except TimeoutError as exc:
            self._names.forget(host, port)
            raise UpstreamTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            self._names.forget(host, port)
            raise UpstreamConnectError(f"cannot connect to {host}:{port}: {exc}") from exc


_Address = tuple[int, tuple[str, int]]


class _Names:
    """Upstream names resolved once per `ttl_s` and per burst: concurrent connections to one
    name share a single lookup (a task of its own, so a visitor who leaves does not cancel it
    for the others)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._known: dict[tuple[str, int], tuple[float, list[_Address]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Task[list[_Address]]] = {}
        self._turn = 0

    async def addresses(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> list[_Address]:
        """An IP literal as is (no resolver round trip); a name through DNS, shared."""
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, host)
            except OSError:
                continue
            return [(family, (host, port))]
        key = (host, port)
        known = self._known.get(key)
        if known is not None and self._clock() < known[0]:
            return self._in_turn(known[1])
        lookup = self._pending.get(key)
        if lookup is None:
            lookup = loop.create_task(self._lookup(loop, key))
            lookup.add_done_callback(_retrieve)
            self._pending[key] = lookup
        return self._in_turn(await asyncio.shield(lookup))

    async def _lookup(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, int]
    ) -> list[_Address]:
        try:
            found = await loop.getaddrinfo(*key, type=socket.SOCK_STREAM)
            addresses: list[_Address] = [
                (int(family), (str(a[0]), int(a[1]))) for family, _, _, _, a in found
            ]
            self._known[key] = (self._clock() + self._ttl, addresses)
            return addresses
        finally:
            if self._pending.get(key) is asyncio.current_task():
                del self._pending[key]

    def _in_turn(self, addresses: list[_Address]) -> list[_Address]:
        """The addresses of the resolver's preferred family starting with the next one in
        turn (a Swarm service's tasks share the new connections), then the others as given."""
        preferred = [a for a in addresses if a[0] == addresses[0][0]] if addresses else []
        if len(preferred) < 2:
            return addresses
        first = self._turn % len(preferred)
        self._turn += 1
        rest = [a for a in addresses if a[0] != addresses[0][0]]
        return preferred[first:] + preferred[:first] + rest

    def forget(self, host: str, port: int) -> None:
        self._known.pop((host, port), None)

    def prune(self, now: float) -> None:
        """Drop the names past their time (services come and go)."""
        for key in [key for key, (until, _) in self._known.items() if until <= now]:
            del self._known[key]

    def clear(self) -> None:
        """Everything (the client moved to another event loop)."""
        self._known.clear()
        self._pending.clear()


def _retrieve(lookup: asyncio.Task[list[_Address]]) -> None:
    """A failed lookup whose every waiter left is not reported as never retrieved."""
    if not lookup.cancelled():
        lookup.exception()


async def _drain(answer: _Answer, send: Send) -> None:
    """Send what was parsed: the headers, then the body chunks of one read as one message, the
    last one marked final once the answer is complete."""
    messages = answer.messages
    answer.messages = []
    body: list[bytes] = []
    for message in messages:
        if message["type"] == "http.response.start":
            message["headers"] = strip_hop_by_hop(message["headers"])
            await send(message)
        else:
            body.append(message["body"])
    if answer.complete and not answer.ended:
        answer.ended = True
        await send({"type": "http.response.body", "body": b"".join(body), "more_body": False})
    elif body:
        await send({"type": "http.response.body", "body": b"".join(body), "more_body": True})
