"""The client's address: the socket peer, unless that peer is a trusted proxy.

Only then is X-Forwarded-For read, right to left, skipping trusted hops: the first untrusted
address is the client. A header sent by anyone else changes nothing.

`connection_context` is the one place the admin application (web/deps.py) and the proxy compute
who is asking from where.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import Scope

from wakedock.context import RequestContext

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Audit rows keep this much of a User-Agent header.
MAX_USER_AGENT = 512
# What `client_headers` never passes on: credentials (only the Authorization scheme is kept).
_DROPPED = frozenset({"cookie", "proxy-authorization"})
_FORWARDING = frozenset({"via", "forwarded", "x-forwarded-for"})
_MAX_HEADERS = 64
_MAX_VALUE = 512


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose X-Forwarded-For is believed (`http.trusted_proxies`)."""

    networks: tuple[IPNetwork, ...] = ()


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[IPNetwork, ...]
) -> bool:
    return any(address in network for network in networks)


def is_trusted(peer: str, trusted: tuple[IPNetwork, ...]) -> bool:
    """True when `peer` is one of the trusted proxies (its forwarding headers are believed)."""
    address = _ip(peer)
    return address is not None and _trusted(address, trusted)


def client_ip(peer: str | None, forwarded_for: list[str], trusted: tuple[IPNetwork, ...]) -> str:
    """Resolve the client address. `forwarded_for` holds every X-Forwarded-For header value."""
    peer_ip = _ip(peer or "")
    if peer_ip is None:
        return "unknown"
    if not trusted or not _trusted(peer_ip, trusted):
        return str(peer_ip)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            # A malformed hop: stop believing the chain here.
            return str(peer_ip)
        if not _trusted(address, trusted):
            return str(address)
        peer_ip = address
    return str(peer_ip)


def peer_of(scope: Scope) -> str | None:
    """The socket peer's address of an HTTP request or WebSocket."""
    client = scope.get("client")
    return str(client[0]) if client else None


def connection_context(scope: Scope, trusted: TrustedProxies) -> RequestContext:
    """Who is asking, from where: the client address, the User-Agent (clipped), the request id.

    Anonymous: the caller names the actor once authentication has run (`as_actor`).
    """
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    forwarded = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
    agent = next((v.decode("latin-1") for k, v in headers if k.lower() == b"user-agent"), "")
    state = scope.get("state") or {}
    return RequestContext(
        ip=client_ip(peer_of(scope), forwarded, trusted.networks),
        user_agent=agent[:MAX_USER_AGENT],
        request_id=state.get("request_id"),
    )


def client_headers(
    raw: Iterable[tuple[bytes, bytes]], *, from_trusted_proxy: bool
) -> dict[str, str]:
    """The request's headers as the engine reads them: names lower case, values clipped, no
    cookies, only the scheme of `Authorization`, and no forwarding headers when the peer is a
    trusted proxy (they are its own; from anyone else they are an anomaly the engine scores)."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name in _DROPPED or (from_trusted_proxy and name in _FORWARDING):
            continue
        text = value.decode("latin-1")[:_MAX_VALUE]
        if name == "authorization":
            text = text.split(" ", 1)[0]
        headers.setdefault(name, text)
        if len(headers) >= _MAX_HEADERS:
            break
    return headers
