"""One place computes who is asking from where (web/client_ip.py: connection_context), for the
admin application and the proxy alike."""

from __future__ import annotations

from typing import Any

from wakedock.web.client_ip import TrustedProxies, connection_context, parse_networks

TRUSTED = TrustedProxies(parse_networks(["10.0.0.0/8"]))


def scope(peer: str, *headers: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 50000),
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        **extra,
    }


def test_the_forwarded_address_only_from_a_trusted_proxy() -> None:
    forwarded = ("X-Forwarded-For", "6.6.6.6, 198.51.100.7")
    assert connection_context(scope("10.0.0.2", forwarded), TRUSTED).ip == "198.51.100.7"
    assert connection_context(scope("203.0.113.9", forwarded), TRUSTED).ip == "203.0.113.9"
    assert connection_context(scope("10.0.0.2", forwarded), TrustedProxies()).ip == "10.0.0.2"


def test_user_agent_clipped_request_id_kept_no_actor() -> None:
    context = connection_context(
        scope("203.0.113.9", ("User-Agent", "x" * 600), state={"request_id": "abc123"}),
        TRUSTED,
    )
    assert context.user_agent == "x" * 512
    assert context.request_id == "abc123"
    assert context.actor is None


def test_no_peer_is_an_unknown_address() -> None:
    context = connection_context({"type": "http", "headers": []}, TRUSTED)
    assert context.ip == "unknown" and context.user_agent == "" and context.request_id is None
