"""Streaming HTTP forwarding to an awake service (S7.5).

Bodies stream both ways, never buffered whole; hop-by-hop headers are stripped;
`X-Forwarded-For/Proto/Host` are set (incoming ones kept only from trusted proxies);
`Content-Encoding` and every `Set-Cookie` pass through untouched (raw bytes, no decoding).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from wakedock.proxy.access import PLAIN_COOKIE, SECURE_COOKIE
from wakedock.proxy.upstream import UpstreamClient, strip_hop_by_hop

FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")


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


async def forward_http(
    client: UpstreamClient,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    host: str,
    port: int,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Send the request to the upstream at host:port and stream the answer back.

    A body goes with its length when the visitor gave one, chunk-encoded otherwise. Raises
    UpstreamConnectError before anything was sent to the visitor (the caller may retry).
    """
    target: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    if query:
        target += b"?" + query
    length: bytes | None = None
    chunked = False
    for key, value in scope["headers"]:
        name = key.lower()
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        # The length of a chunked request is unknown: the upstream gets chunks too.
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    if not any(k.lower() == b"host" for k, _ in headers):
        headers = [(b"host", f"{host}:{port}".encode()), *headers]
    has_body = chunked or (length is not None and length.strip() != b"0")
    await client.forward(
        host,
        port,
        method=scope["method"],
        target=target,
        headers=headers,
        receive=receive if has_body else None,
        chunked=chunked,
        send=send,
    )
