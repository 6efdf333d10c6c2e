"""The socket proxy's listener: one request per connection, bounded in every direction.

Each connection is read with h11 under a head size cap, a body size cap and deadlines; a
malformed request gets 400 and only its own connection closes. At most `concurrency` requests
are in the engine's hands at once: a burst beyond waits up to `queue_timeout` for a turn, then
gets 429. Refusals are 403 with the engine's own error shape (`{"message": ...}`) and one log
line each (method, path, reason; never a body, a query or a header).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import h11

from wakedock.sockproxy.engine import Answer, Engine, EngineUnreachable, request_head
from wakedock.sockproxy.gate import (
    Answered,
    FilteredEvents,
    Forward,
    Gate,
    Refused,
    Request,
    ServiceEvents,
)
from wakedock.sockproxy.routes import match

log = logging.getLogger("wakedock.sockproxy")
LINGER_SECONDS = 1.0
LINGER_BYTES = 8 * 1024 * 1024
# One event of the engine's stream (a few hundred bytes in practice).
MAX_EVENT_BYTES = 1024 * 1024
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


@dataclass(frozen=True)
class Limits:
    max_head: int = 16 * 1024
    max_body: int = 1024 * 1024
    concurrency: int = 64
    max_connections: int = 1024
    queue_timeout: float = 30.0
    head_timeout: float = 10.0
    body_timeout: float = 30.0


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_answer(status: int, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    reason = HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def buffered_answer(answer: Answer) -> bytes:
    reason = (
        HTTPStatus(answer.status).phrase if answer.status in HTTPStatus._value2member_map_ else ""
    )
    lines = [f"HTTP/1.1 {answer.status} {reason}".encode()]
    lines += [n + b": " + v for n, v in answer.headers if n.lower() not in _FRAMING]
    lines += [f"Content-Length: {len(answer.body)}".encode(), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + answer.body


class SocketProxy:
    def __init__(self, gate: Gate, engine: Engine, *, swarm: bool, limits: Limits) -> None:
        self._gate = gate
        self._engine = engine
        self._swarm = swarm
        self._limits = limits
        self._turns = asyncio.Semaphore(limits.concurrency)
        self._connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection; nothing raised here reaches the server."""
        self._connections += 1
        try:
            if self._connections > self._limits.max_connections:
                writer.write(error_answer(429, "socket-proxy: too many connections"))
                return
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except Exception:
            log.exception("socket-proxy: unexpected failure serving a request")
            with contextlib.suppress(ConnectionError):
                writer.write(error_answer(500, "socket-proxy: internal error"))
        finally:
            self._connections -= 1
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._read(reader)
        except BadRequest as exc:
            writer.write(error_answer(exc.status, f"socket-proxy: {exc.message}"))
            await writer.drain()
            if exc.status in (413, 431):  # the rest of it may still be on its way
                await _linger(reader)
            return
        if not request.target.startswith("/"):
            # Origin form only: an absolute URL could name another path than the one checked.
            writer.write(error_answer(400, "socket-proxy: the target must be a path"))
            return
        path = urlsplit(request.target).path
        found = match(request.method, path, swarm=self._swarm)
        if found is None:
            self._refuse(writer, request.method, path, "this endpoint is not one WakeDock uses")
            return
        try:
            await asyncio.wait_for(self._turns.acquire(), self._limits.queue_timeout)
        except TimeoutError:
            writer.write(error_answer(429, "socket-proxy: too many requests at once"))
            return
        try:
            decision = await self._gate.decide(found, request)
            if isinstance(decision, Answered):
                writer.write(buffered_answer(decision.answer))
            elif isinstance(decision, Forward):
                await self._relay(decision.request, reader, writer)
            elif isinstance(decision, FilteredEvents):
                await self._relay(decision.request, reader, writer, self._gate.service_events())
        except Refused as exc:
            self._refuse(writer, request.method, path, exc.reason)
        except EngineUnreachable:
            writer.write(error_answer(502, "socket-proxy: the Docker engine cannot be reached"))
        finally:
            self._turns.release()

    def _refuse(self, writer: asyncio.StreamWriter, method: str, path: str, reason: str) -> None:
        # The path only: a query may carry filters, and bodies carry environments (secrets).
        record = {"event": "socket_proxy_refused", "method": method, "path": path, "reason": reason}
        log.warning(json.dumps(record))
        writer.write(error_answer(403, f"socket-proxy: {reason}"))

    async def _read(self, reader: asyncio.StreamReader) -> Request:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head)
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(exc.error_status_hint, "malformed HTTP request") from None
            if event is h11.NEED_DATA:
                timeout = self._limits.head_timeout if head is None else self._limits.body_timeout
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except TimeoutError:
                    raise BadRequest(408, "request not received in time") from None
                parser.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                # h11 caps a head that arrives in pieces; one read may bring a whole big one.
                size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                if size > self._limits.max_head:
                    raise BadRequest(431, "request head too large")
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > self._limits.max_body:
                    raise BadRequest(413, "request body too large")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._limits.max_body:
                    raise BadRequest(413, "request body too large")
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                if not (head.method.isascii() and head.target.isascii()):
                    raise BadRequest(400, "malformed HTTP request")
                return Request(
                    head.method.decode("ascii"),
                    head.target.decode("ascii"),
                    list(head.headers),
                    bytes(body),
                )
            else:  # ConnectionClosed or PAUSED before a whole request
                raise ConnectionError("the client closed before a whole request")

    async def _relay(
        self,
        request: Request,
        client: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        judge: ServiceEvents | None = None,
    ) -> None:
        """Relay the engine's answer as it comes (an event stream: each event as `judge` says),
        until the engine or the client closes."""
        engine_reader, engine_writer = await self._engine.open()
        try:
            engine_writer.write(
                request_head(request.method, request.target, request.headers, request.body)
                + request.body
            )
            await engine_writer.drain()
            relay = asyncio.create_task(
                _copy(engine_reader, writer)
                if judge is None
                else _judged_events(request.target, engine_reader, writer, judge)
            )
            # A follow stream ends when its client hangs up: watch for that meanwhile.
            gone = asyncio.create_task(_closed(client))
            done, pending = await asyncio.wait({relay, gone}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            if relay in done:
                relay.result()
        except (OSError, h11.ProtocolError) as exc:
            raise EngineUnreachable(type(exc).__name__) from exc
        finally:
            engine_writer.close()


async def _judged_events(
    target: str, engine: asyncio.StreamReader, sink: asyncio.StreamWriter, judge: ServiceEvents
) -> None:
    """The engine's answer to `GET target` (events: one JSON object per line), each line
    passed on only as `judge` says, re-framed as chunks; any other answer relayed whole."""
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target=target, headers=[("Host", "docker")]))
    parser.send(h11.EndOfMessage())
    status, pending = 0, b""
    headers: list[tuple[bytes, bytes]] = []
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            parser.receive_data(await engine.read(65536))
        elif isinstance(event, h11.Response):
            status, headers = event.status_code, list(event.headers)
            if status == 200:
                kept = [n + b": " + v for n, v in headers if n.lower() not in _FRAMING]
                head = [b"HTTP/1.1 200 OK", *kept, b"Transfer-Encoding: chunked"]
                sink.write(b"\r\n".join([*head, b"Connection: close"]) + b"\r\n\r\n")
                await sink.drain()
        elif isinstance(event, h11.Data):
            pending += bytes(event.data)
            if len(pending) > MAX_EVENT_BYTES:
                raise EngineUnreachable("an event (or an error) too long")
            if status != 200:
                continue  # an error's body, relayed whole at its end
            *lines, pending = pending.split(b"\n")
            for line in lines:
                passed = await judge.judge(line) if line.strip() else None
                if passed is not None:
                    chunk = passed + b"\n"
                    sink.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    await sink.drain()
        else:  # EndOfMessage, ConnectionClosed
            if status == 0:
                raise EngineUnreachable("the engine closed before answering")
            if status == 200:
                sink.write(b"0\r\n\r\n")
            else:
                sink.write(buffered_answer(Answer(status, headers, pending)))
            await sink.drain()
            return


async def _linger(client: asyncio.StreamReader) -> None:
    """Read and drop what the client is still sending (a body refused as too large), for a
    bounded time and size: closing on unread data could reset the connection before the client
    has read its error answer."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(LINGER_SECONDS):
            dropped = 0
            while dropped < LINGER_BYTES and (data := await client.read(65536)):
                dropped += len(data)


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()


async def _closed(client: asyncio.StreamReader) -> None:
    while await client.read(65536):
        pass  # one request per connection: anything more is ignored
