"""HTTP/1.1 by hand over TLS, for requests no ordinary client sends: a body streamed while the
answer is read (as a browser does), a head of any size."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

CHUNK = b"a" * 65536


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int = 0  # request body bytes the client could push before the answer came
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(status, headers, body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes; False if it still holds the connection after 15 s (far
    beyond every deadline the slow-client tests set)."""
    try:
        return await asyncio.wait_for(reader.read(), 15) == b""
    except TimeoutError:
        return False
    except OSError:
        return True  # reset


async def body_stops_arriving(port: int, context: ssl.SSLContext) -> bool:
    """Begin a login whose body never comes: True once the server closes the connection."""
    reader, writer = await open_tls(port, context)
    try:
        writer.write(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 16000\r\n\r\n"
            b'{"username": '
        )
        return await closed_by_server(reader)
    finally:
        writer.close()


async def open_tls(
    port: int, context: ssl.SSLContext, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1", local_addr=(source, 0)
    )


async def stream_upload(
    port: int,
    context: ssl.SSLContext,
    path: str,
    *,
    total: int,
    chunked: bool,
    content_type: str = "application/json",
    timeout: float = 600.0,
) -> Answer:
    """POST a body of `total` bytes, generated on the fly, while reading the answer; stop
    sending once it has come (as browsers do). With `chunked`, no Content-Length is sent."""
    reader, writer = await open_tls(port, context)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
    writer.write(f"{head}{framing}\r\n\r\n".encode())
    sent = 0

    async def pump() -> None:
        nonlocal sent
        piece = b"%x\r\n%b\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(CHUNK)
            # drain() returns without yielding while the socket takes the data: let the reader
            # see an answer that has come (as a browser would), or this loop never stops.
            await asyncio.sleep(0)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    pumping = asyncio.create_task(pump())
    try:
        answer = await asyncio.wait_for(read_answer(reader), timeout)
    finally:
        pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)
        writer.close()
    answer.sent = sent
    return answer


async def send_head(port: int, context: ssl.SSLContext, head: bytes) -> Answer:
    """Send a whole request head (of any size) and read the answer."""
    reader, writer = await open_tls(port, context)
    try:
        writer.write(head)
        sending = asyncio.create_task(writer.drain())
        answer = await asyncio.wait_for(read_answer(reader), 60)
        await asyncio.gather(sending, return_exceptions=True)
        return answer
    finally:
        writer.close()
