"""Streaming HTTP forwarding to an awake service (S7.5).

Bodies stream both ways, never buffered whole; hop-by-hop headers are stripped;
`X-Forwarded-For/Proto/Host` are set (incoming ones kept only from trusted proxies);
`Content-Encoding` and every `Set-Cookie` pass through untouched (raw bytes, no decoding).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from wakedock.proxy.access import PLAIN_COOKIE, SECURE_COOKIE

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
FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")


def _listed_in_connection(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(part.strip().lower() for part in value.split(b",") if part.strip())
    return named


def strip_hop_by_hop(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    drop = HOP_BY_HOP | _listed_in_connection(headers)
    return [(k, v) for k, v in headers if k.lower() not in drop]


# WakeDock's own credentials for the service host: never handed to the app behind it.
OWN_COOKIES = (SECURE_COOKIE.encode(), PLAIN_COOKIE.encode())


def _without_own_cookies(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        if key.lower() != b"cookie":
            kept.append((key, value))
            continue
        parts = [p for p in value.split(b";") if p.strip().split(b"=", 1)[0] not in OWN_COOKIES]
        if parts:
            kept.append((key, b";".join(parts).strip()))
    return kept


def upstream_headers(
    scope: Scope, peer: str, *, trusted_peer: bool, proto: str, host: str
) -> list[tuple[bytes, bytes]]:
    """The request headers the upstream sees: X-Forwarded-For is the chain a trusted peer sent
    (nothing from anyone else) followed by the peer's own address, as every proxy appends."""
    raw: list[tuple[bytes, bytes]] = list(scope["headers"])
    headers = strip_hop_by_hop(raw)
    previous = [v for k, v in headers if k.lower() == b"x-forwarded-for"] if trusted_peer else []
    headers = [(k, v) for k, v in headers if k.lower() not in FORWARDED]
    headers = _without_own_cookies(headers)
    chain = b", ".join([*previous, peer.encode()])
    headers += [
        (b"x-forwarded-for", chain),
        (b"x-forwarded-proto", proto.encode()),
        (b"x-forwarded-host", host.encode()),
    ]
    return headers


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def forward_http(
    client: httpx.AsyncClient,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    base: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Send the request to `base` (http://host:port) and stream the answer back.

    Raises httpx.ConnectError before anything was sent to the client (the caller may retry).
    """
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    url = base + path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    has_body = any(
        k.lower() in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"]
    )
    request = httpx.Request(
        scope["method"],
        url,
        headers=headers,
        content=_request_body(receive) if has_body else None,
    )
    response = await client.send(request, stream=True)
    try:
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": strip_hop_by_hop(list(response.headers.raw)),
            }
        )
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await response.aclose()
