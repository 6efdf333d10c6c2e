"""WebSocket pass-through (S7.5): the visitor's socket is accepted only once the upstream one is
open, then messages are pumped both ways until either side closes."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

# Headers the websockets client sets itself, or that belong to this hop only.
_OWN = frozenset(
    {
        b"host",
        b"connection",
        b"upgrade",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"origin",
    }
)


async def _to_upstream(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(code=message.get("code", 1000))
            return
        if message.get("text") is not None:
            await upstream.send(message["text"])
        elif message.get("bytes") is not None:
            await upstream.send(message["bytes"])


async def _to_client(upstream: ClientConnection, send: Send) -> None:
    try:
        async for data in upstream:
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed:
        pass
    code = upstream.close_code or 1000
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code})


async def forward_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    url: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Tunnel one WebSocket to `url` (ws://host:port/path?query)."""
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    extra = [
        (k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k.lower() not in _OWN
    ]
    origin = dict(scope["headers"]).get(b"origin")
    subprotocols = list(scope.get("subprotocols") or [])
    try:
        upstream = await connect(
            url,
            additional_headers=extra,
            subprotocols=subprotocols or None,
            origin=origin.decode("latin-1") if origin else None,
            user_agent_header=None,
            compression=None,
            proxy=None,
            max_size=None,
            ping_interval=None,
            # An upstream that never finishes the close handshake holds the service awake only
            # this long.
            close_timeout=2,
        )
    except (OSError, InvalidHandshake, InvalidStatus, TimeoutError):
        await send({"type": "websocket.close", "code": 1011})
        return
    async with upstream:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        tasks = [
            asyncio.create_task(_to_upstream(receive, upstream)),
            asyncio.create_task(_to_client(upstream, send)),
        ]
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
