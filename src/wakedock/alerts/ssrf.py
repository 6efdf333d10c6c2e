"""Webhook URLs must not become a way into the server's own network (SSRF, S8.4).

A webhook host is resolved and every address it resolves to is checked: link-local (and so the
cloud metadata service 169.254.169.254), loopback, private, unique-local, multicast, reserved
and unspecified addresses are refused unless an admin allowlisted their network. The check runs
when the configuration loads and again before every delivery, and the request then goes to the
address that was checked (no second DNS lookup for a rebinding attack to win).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))


class UnsafeWebhook(ValueError):
    """The webhook URL is refused; the message says why (never with its secret path)."""


@dataclass(frozen=True)
class WebhookTarget:
    scheme: str
    host: str
    port: int
    address: str
    path: str
    query: str


def _forbidden(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "not a unicast address"
    if address.is_private:
        return "a private address"
    return None


def check_webhook(url: str, allowed: tuple[IPNetwork, ...]) -> WebhookTarget:
    """Resolve and check `url`; the address to connect to, or UnsafeWebhook saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhook("a webhook URL is http(s)://host/path")
    if parts.username or parts.password:
        raise UnsafeWebhook("a webhook URL carries no credentials in its authority")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UnsafeWebhook(f"webhook host {parts.hostname} does not resolve") from None
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    for address in sorted(addresses, key=str):
        reason = _forbidden(address)
        # The metadata service is never allowlisted, whatever the networks say.
        if reason and (address in METADATA or not any(address in net for net in allowed)):
            raise UnsafeWebhook(
                f"webhook host {parts.hostname} resolves to {address}, {reason}; "
                "allowlist its network in alerts.allowed_networks if it is really yours"
            )
    chosen = sorted(addresses, key=lambda a: (a.version, str(a)))[0]
    return WebhookTarget(
        parts.scheme, parts.hostname, port, str(chosen), parts.path or "/", parts.query
    )
