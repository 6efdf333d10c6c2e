"""The proxy's own connection to the engine: one request per connection, over its unix socket.

Requests go out with `Connection: close`, so an answer ends when the engine closes: a streamed
answer (logs with follow, events, stats) is relayed as it comes, and a buffered one is read
whole, up to a cap, for the label checks and list filters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h11

# Headers the proxy sets itself: one request per engine connection, body length known.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"upgrade",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"host",
        b"expect",
    }
)
MAX_ANSWER = 32 * 1024 * 1024


class EngineUnreachable(Exception):
    """The engine's socket is gone, refused the connection or did not answer in time."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_head(
    method: str, target: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """The head sent to the engine: the client's end-to-end headers, our framing."""
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: docker"]
    lines += [name + b": " + value for name, value in headers if name.lower() not in _HOP_BY_HOP]
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Engine:
    """Opens connections to the engine's socket at `socket_path`."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            raise EngineUnreachable(type(exc).__name__) from exc

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> Answer:
        """One whole answer (at most MAX_ANSWER bytes), within the timeout."""
        try:
            return await asyncio.wait_for(
                self._request(method, target, body, headers), self.timeout
            )
        except (OSError, TimeoutError, h11.ProtocolError) as exc:
            raise EngineUnreachable(type(exc).__name__) from exc

    async def _request(
        self, method: str, target: str, body: bytes, headers: Iterable[tuple[bytes, bytes]]
    ) -> Answer:
        reader, writer = await self.open()
        try:
            writer.write(request_head(method, target, headers, body) + body)
            await writer.drain()
            parser = h11.Connection(h11.CLIENT)
            # h11 must see the request it answers (a HEAD answer has no body).
            parser.send(h11.Request(method=method, target=target, headers=[("Host", "docker")]))
            parser.send(h11.EndOfMessage())
            status, answer_headers, chunks, size = 0, [], [], 0
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    parser.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    status, answer_headers = event.status_code, list(event.headers)
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_ANSWER:
                        raise EngineUnreachable("answer too large")
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return Answer(status, answer_headers, b"".join(chunks))
        finally:
            writer.close()
