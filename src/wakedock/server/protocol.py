"""The HTTP/1.1 connection of `wakedock serve`: uvicorn's protocol plus the limits it lacks.

The limits are the same whichever parser reads the requests (h11 in server/h11_protocol.py,
httptools in server/httptools_protocol.py); `ConnectionGuards` holds them and each parser's
class tells it where a request stands.

- TLS is set up here (`loop.start_tls`) rather than by the listening socket, so that a connection
  holds a slot of the ConnectionLimiter from the moment it is accepted, and a handshake that
  never completes is dropped with the head deadline (asyncio's own default is 60 s).
- The TLS handshake and the whole request head must arrive within `header_timeout`, counted from
  the accept, or from the first byte of a later request on a keep-alive connection. A silent
  keep-alive connection is closed by uvicorn's `timeout_keep_alive`.
- While the application has a request, the client must keep up: a body that stops arriving, or
  an answer it stops reading, for `body_timeout` closes the connection (a slot held that way is
  never free for eviction, so without this a few addresses could hold every slot). A pause the
  server caused (it stopped reading while the application had not taken the body yet) is not
  the client's.
- A head larger than `max_header_bytes` is answered 431, another malformed request 400, as JSON
  with the security headers.
- When the answer leaves request data unread (a 413 before the body, a 431), the connection reads
  and drops what follows for LINGER_SECONDS at most before closing: closing at once with data
  unread would reset the connection and the client, still sending, would lose the answer.

uvicorn builds one protocol per accepted socket from `uvicorn.Config(http=guarded_protocol(...))`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.server import ServerState

from wakedock.server.connections import ConnectionLimiter

LINGER_SECONDS = 5.0
# Lingering ends sooner once the client has sent nothing for this long.
_LINGER_QUIET_SECONDS = 1.0

_Wait = Literal["head", "body", "busy", "linger"]
ParserName = Literal["httptools", "h11"]


@dataclass(frozen=True)
class ConnectionRules:
    limiter: ConnectionLimiter
    tls: ssl.SSLContext | None
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    # Security headers for the answers the protocol writes itself (web/headers.py).
    answer_headers: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Refusal:
    """The answer to a request the parser refused, written by the protocol itself."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def reason(self) -> bytes:
        return HTTPStatus(self.status).phrase.encode()


class _UvicornHttp(asyncio.Protocol):
    """What the guards use of uvicorn's HTTP protocols (H11Protocol, HttpToolsProtocol). Only
    annotations: at run time every name resolves to the uvicorn class later in the MRO."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: FlowControl
    connections: set[Any]
    timeout_keep_alive_task: asyncio.TimerHandle | None

    if TYPE_CHECKING:

        def __init__(self, *args: Any) -> None: ...  # as ConnectionGuards.__init__

        def shutdown(self) -> None: ...


class ConnectionGuards(_UvicornHttp):
    """The limits of one connection, whatever the parser. A parser's class says where the
    request stands (`_answering`, `_owes_body`, `_between_requests`), feeds it the data
    (`_read`) and writes the protocol's own answers (`_write_refusal`); `_set_up` readies its
    parser once uvicorn's protocol is built, so no parser's class repeats this constructor."""

    rules: ClassVar[ConnectionRules]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._raw: asyncio.Transport | None = None
        self._handshake: asyncio.Task[None] | None = None
        self._early: list[bytes] = []  # decrypted before the handshake's end was seen
        self._hello: list[bytes] = []  # raw bytes read before the TLS layer took over
        self._tls_started = False
        self._connected = False  # uvicorn's side is set up (after the TLS handshake)
        self._lost = False
        self._upgraded = False
        self._lingering = False
        self._linger_end = self._last_data = 0.0
        self._last_read = 0.0  # when the client last sent anything
        self._unsent: int | None = None  # answer bytes waiting at the last busy check
        self._waiting: _Wait | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._set_up()

    # -- what the parser's class tells --------------------------------------------------------

    def _set_up(self) -> None:
        """The parser's own state, after uvicorn's protocol and the guards' are built."""
        raise NotImplementedError

    def _answering(self) -> bool:
        """The application has a request it has not finished answering."""
        raise NotImplementedError

    def _owes_body(self) -> bool:
        """The client is in the middle of sending a request body."""
        raise NotImplementedError

    def _between_requests(self) -> bool:
        """No request head complete yet (none begun, or one still arriving)."""
        raise NotImplementedError

    def _read(self, data: bytes) -> None:
        """Hand the client's bytes to the parser (and so to uvicorn)."""
        raise NotImplementedError

    def _write_refusal(self, refusal: Refusal) -> None:
        raise NotImplementedError

    # -- the connection's life --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw = transport
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        if not self.rules.limiter.admit(self, address):
            transport.abort()
            return
        # Registered now, so that a graceful shutdown reaches it even during the handshake.
        self.connections.add(self)
        self._expect("head", self.rules.header_timeout)
        if self.rules.tls is None:
            self._start(transport)
            return
        # asyncio honours this; uvloop starts reading after connection_made whatever it was
        # told, so there the ClientHello may reach data_received first (kept in _hello).
        transport.pause_reading()
        self._handshake = self.loop.create_task(self._secure(transport, self.rules.tls))

    async def _secure(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        if self._lost:  # closed (evicted, shut down) before the handshake could begin
            return
        raw.pause_reading()  # now honoured by every loop: the rest waits in the socket
        self._tls_started = True  # from now on data_received gets decrypted bytes
        starting = self.loop.start_tls(
            raw,
            self,
            context,
            server_side=True,
            ssl_handshake_timeout=self.rules.header_timeout,
            ssl_shutdown_timeout=LINGER_SECONDS,
        )
        try:
            secured = await _with_hello_first(self.loop, starting, raw, self._hello)
        except asyncio.CancelledError:  # the server is shutting down
            self._forget()
            raise
        except Exception:  # noqa: BLE001 - whatever ended the handshake, the slot must go
            # Failed (ssl.SSLError), timed out or cut (ConnectionError): start_tls has closed
            # the socket, and connection_lost is never called before a handshake completes.
            self._forget()
            return
        if secured is not None and not self._lost:
            self._start(secured)

    def _start(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._connected = True
        # The TLS layer may have decrypted the first request before start_tls returned.
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._forget()
        if self._connected:
            super().connection_lost(exc)

    def _forget(self) -> None:
        self._expect(None)
        self.rules.limiter.release(self)
        self.connections.discard(self)

    def evict(self) -> None:
        """Closed at once to make room for a newcomer (ConnectionLimiter)."""
        if self._raw is not None:
            self._raw.abort()

    def shutdown(self) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()  # start_tls closes the socket; _secure frees the slot
        if self._connected and not self._lingering:
            super().shutdown()
        elif self._raw is not None:
            self._raw.abort()

    # -- requests -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._connected:
            (self._early if self._tls_started else self._hello).append(data)
            return
        self._last_read = self.loop.time()
        if self._lingering:
            self._last_data = self._last_read
            return  # after an error answer: read and dropped
        if self._between_requests() and not self._answering():
            self._expect("head", self.rules.header_timeout)
        self._read(data)
        self._follow()

    def _follow(self) -> None:
        """After each step of the request cycle: is the client or the app expected next?"""
        if self._lingering or self._upgraded or self.transport.is_closing():
            return
        limiter = self.rules.limiter
        if self._answering():
            limiter.busy(self)  # the app has the request; the client must keep up with it
            self._expect("busy", self.rules.body_timeout)
        elif self._owes_body():
            # Answered before the whole body came (a 413, a 401): uvicorn drops the rest,
            # which must follow soon.
            limiter.idle(self)
            self._expect("body", LINGER_SECONDS)
        elif self._between_requests():
            limiter.idle(self)
            if self.timeout_keep_alive_task is not None:
                self._expect(None)  # silent so far: uvicorn's keep-alive timeout applies
            else:
                self._expect("head", self.rules.header_timeout)

    def _upgrade(self, hand_over: Callable[[], None]) -> None:
        """A WebSocket upgrade: `hand_over` gives the transport to uvicorn's WebSocket protocol,
        which then holds the slot until its connection is lost."""
        self._upgraded = True
        self._expect(None)
        self.rules.limiter.busy(self)
        hand_over()
        upgraded = self.transport.get_protocol()
        lost = upgraded.connection_lost

        def release(exc: Exception | None) -> None:
            self._forget()
            lost(exc)

        setattr(upgraded, "connection_lost", release)  # noqa: B010 - an instance hook

    def _refuse(self, too_large: bool) -> None:
        """The answer to a request the parser refused: 431 or 400, as JSON, then linger."""
        if too_large:
            status, detail, code = 431, "request headers too large", "headers_too_large"
        else:
            status, detail, code = 400, "malformed HTTP request", "bad_request"
        body = json.dumps({"detail": detail, "code": code}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *self.rules.answer_headers,
        ]
        self._write_refusal(Refusal(status, headers, body))
        self._linger()

    def _linger(self) -> None:
        self._lingering = True
        self._linger_end = self.loop.time() + LINGER_SECONDS
        self._last_data = self.loop.time()
        self.rules.limiter.idle(self)
        self.flow.resume_reading()
        self._expect("linger", _LINGER_QUIET_SECONDS)

    # -- deadlines ----------------------------------------------------------------------------

    def _stalled(self) -> bool:
        """During a request: the client sent nothing of a body it still owes (while the server
        was reading), or read nothing of the answer, for a whole `body_timeout`."""
        now = self.loop.time()
        if self.flow.read_paused:
            self._last_read = now  # the server's pause, not the client's
        elif self._owes_body() and now - self._last_read >= self.rules.body_timeout:
            return True
        unsent = self.transport.get_write_buffer_size() if self.flow.write_paused else None
        stuck = unsent is not None and self._unsent is not None and unsent >= self._unsent
        self._unsent = unsent
        return stuck

    def _expect(self, waiting: _Wait | None, seconds: float = 0.0) -> None:
        """Close the connection unless the client gets past `waiting` within `seconds`. A
        deadline already running for the same thing keeps running; None cancels it."""
        if waiting is not None and waiting == self._waiting:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting = waiting
        if waiting is not None:
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _expired(self) -> None:
        waiting, self._waiting, self._deadline = self._waiting, None, None
        if waiting == "busy":
            if self._stalled() and self._raw is not None:
                self._raw.abort()
            else:
                self._expect("busy", self.rules.body_timeout)
            return
        if waiting == "linger":
            now = self.loop.time()
            if now - self._last_data < _LINGER_QUIET_SECONDS and now < self._linger_end:
                self._expect("linger", _LINGER_QUIET_SECONDS)  # still sending: a bit longer
            else:
                self.transport.close()  # the answer has had its chance: a clean close
            return
        if self._raw is not None:
            self._raw.abort()


def installed(module: str) -> bool:
    """Whether an optional accelerator (httptools, uvloop) can be imported."""
    return importlib.util.find_spec(module) is not None


def choose_parser(setting: Literal["auto", "httptools", "h11"]) -> ParserName:
    """The parser `server.http_parser` asks for; "auto": httptools when it is installed."""
    if setting == "auto":
        return "httptools" if installed("httptools") else "h11"
    if setting == "httptools" and not installed("httptools"):
        raise RuntimeError("server.http_parser is httptools, but httptools is not installed")
    return setting


def choose_loop(setting: Literal["auto", "uvloop", "asyncio"]) -> Literal["uvloop", "asyncio"]:
    """The event loop `server.event_loop` asks for; "auto": uvloop when it is installed."""
    if setting == "auto":
        return "uvloop" if installed("uvloop") else "asyncio"
    if setting == "uvloop" and not installed("uvloop"):
        raise RuntimeError("server.event_loop is uvloop, but uvloop is not installed")
    return setting


async def _with_hello_first(
    loop: asyncio.AbstractEventLoop,
    starting: Coroutine[Any, Any, asyncio.Transport | None],
    raw: asyncio.Transport,
    hello: list[bytes],
) -> asyncio.Transport | None:
    """Await `starting` (loop.start_tls), giving the TLS layer the bytes read before it took
    over (`hello`) ahead of anything else the socket holds.

    start_tls swaps the transport's protocol and queues two callbacks: the TLS layer's
    connection_made, then resume_reading. Its first step is run here, by hand, so that one more
    callback can be queued right behind those two: it feeds `hello` to the TLS layer in the
    same turn of the loop, before the socket is read again, so the bytes stay in order.
    """
    try:
        waiter = starting.send(None)  # runs start_tls up to its wait for the handshake
    except StopIteration as done:  # finished without waiting (not seen in practice)
        return cast("asyncio.Transport | None", done.value)
    if not asyncio.isfuture(waiter):  # not the start_tls of asyncio or uvloop
        starting.close()
        raise RuntimeError("loop.start_tls waited on something other than a future")
    if hello:
        early, hello[:] = b"".join(hello), []
        loop.call_soon(_feed, raw.get_protocol(), early)
    try:
        await asyncio.wait([waiter])
    except asyncio.CancelledError:
        starting.close()  # start_tls's cleanup: closes the TLS transport
        raise
    try:
        starting.send(None)
    except StopIteration as done:
        return cast("asyncio.Transport | None", done.value)
    raise RuntimeError("start_tls awaited more than once")


def _feed(protocol: Any, data: bytes) -> None:
    """Hand `data` to `protocol` as if its transport had just read it. Both loops' TLS layers
    are buffered protocols (uvloop's is not an asyncio.BufferedProtocol subclass)."""
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


def guarded_protocol(rules: ConnectionRules, parser: ParserName) -> type[ConnectionGuards]:
    """The protocol class for uvicorn.Config(http=...), bound to one server's rules."""
    base: type[ConnectionGuards]
    if parser == "httptools":
        from wakedock.server.httptools_protocol import GuardedHttpToolsProtocol

        base = GuardedHttpToolsProtocol
    else:
        from wakedock.server.h11_protocol import GuardedH11Protocol

        base = GuardedH11Protocol
    return type("WakeDockHttpProtocol", (base,), {"rules": rules})
