"""Client address resolution: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

from wakedock.web.client_ip import client_ip, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])


def test_untrusted_peer_ignores_the_header() -> None:
    assert client_ip("198.51.100.7", ["1.2.3.4"], PROXIES) == "198.51.100.7"
    assert client_ip("198.51.100.7", ["1.2.3.4"], ()) == "198.51.100.7"


def test_trusted_proxy_reads_right_to_left() -> None:
    # The client forged "6.6.6.6"; the proxy appended the real peer 198.51.100.7.
    assert client_ip("10.0.0.2", ["6.6.6.6, 198.51.100.7"], PROXIES) == "198.51.100.7"
    # Two trusted hops are skipped.
    assert client_ip("10.0.0.2", ["198.51.100.7, 10.0.0.9"], PROXIES) == "198.51.100.7"
    # Several header lines count as one list.
    assert client_ip("10.0.0.2", ["6.6.6.6", "198.51.100.7"], PROXIES) == "198.51.100.7"


def test_malformed_hops_stop_the_walk() -> None:
    assert client_ip("10.0.0.2", ["198.51.100.7, garbage"], PROXIES) == "10.0.0.2"
    assert client_ip("10.0.0.2", [], PROXIES) == "10.0.0.2"


def test_ipv6_and_mapped_addresses() -> None:
    assert client_ip("::ffff:198.51.100.7", [], PROXIES) == "198.51.100.7"
    assert client_ip("fd00::1", ["2001:db8::5"], PROXIES) == "2001:db8::5"
    assert client_ip("testclient", [], PROXIES) == "unknown"
