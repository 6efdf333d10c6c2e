"""The connection limiter's rules: per-client and total caps, which connection makes room, and
one overload report per interval."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from wakedock.config import ConfigError, load_settings
from wakedock.server.connections import (
    OVERLOAD_LOG_SECONDS,
    ConnectionLimiter,
    client_key,
    connection_cap,
)


class FakeConnection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True

    def __repr__(self) -> str:
        return self.name


def _open(limiter: ConnectionLimiter, address: str, count: int) -> list[FakeConnection]:
    made = [FakeConnection(f"{address}#{n}") for n in range(count)]
    for connection in made:
        assert limiter.admit(connection, address)
    return made


def test_a_client_cannot_hold_more_than_its_share() -> None:
    limiter = ConnectionLimiter(max_connections=100, per_client=3)
    held = _open(limiter, "198.51.100.7", 3)
    assert not limiter.admit(FakeConnection("fourth"), "198.51.100.7")
    assert limiter.admit(FakeConnection("other"), "198.51.100.8")
    # A slot comes back when one of its connections closes.
    limiter.release(held[0])
    limiter.release(held[0])  # twice is harmless
    assert limiter.admit(FakeConnection("again"), "198.51.100.7")
    assert len(limiter) == 4


def test_a_full_server_closes_an_idle_connection_of_the_busiest_client() -> None:
    limiter = ConnectionLimiter(max_connections=6, per_client=6)
    lone = _open(limiter, "203.0.113.1", 1)[0]
    flood = _open(limiter, "203.0.113.66", 5)
    newcomer = FakeConnection("newcomer")
    assert limiter.admit(newcomer, "203.0.113.2")
    # The flood loses its longest-idle socket; the lone client, idle longer still, stays.
    assert flood[0].evicted and not lone.evicted
    assert not any(c.evicted for c in flood[1:])
    assert len(limiter) == 6


def test_connections_with_a_request_in_progress_are_never_closed_to_make_room() -> None:
    limiter = ConnectionLimiter(max_connections=3, per_client=3)
    working = _open(limiter, "203.0.113.9", 3)
    for connection in working:
        limiter.busy(connection)
    assert not limiter.admit(FakeConnection("newcomer"), "203.0.113.10")
    assert not any(c.evicted for c in working)
    # Back to idle (waiting for the next request): it may now make room.
    limiter.idle(working[1])
    assert limiter.admit(FakeConnection("newcomer"), "203.0.113.10")
    assert working[1].evicted


def test_ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::5") != client_key("2001:db8:1:3::5")
    assert client_key("::ffff:192.0.2.4") == "192.0.2.4"
    assert client_key(None) == "local"
    limiter = ConnectionLimiter(max_connections=10, per_client=2)
    _open(limiter, "2001:db8::1", 1)
    _open(limiter, "2001:db8::2", 1)
    assert not limiter.admit(FakeConnection("third"), "2001:db8::3")


def test_trusted_proxies_are_not_held_to_the_per_client_limit() -> None:
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    limiter = ConnectionLimiter(max_connections=10, per_client=2, exempt=proxies)
    _open(limiter, "10.1.2.3", 5)
    _open(limiter, "192.0.2.1", 2)
    assert not limiter.admit(FakeConnection("third"), "192.0.2.1")
    assert len(limiter) == 7


def test_overload_is_reported_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    limiter = ConnectionLimiter(max_connections=2, per_client=1, clock=lambda: now[0])
    _open(limiter, "192.0.2.1", 1)
    caplog.set_level(logging.WARNING, logger="wakedock.server")
    for n in range(500):  # a flood within one interval
        limiter.admit(FakeConnection(f"x{n}"), "192.0.2.1")
    assert len(caplog.records) == 1
    now[0] += OVERLOAD_LOG_SECONDS
    limiter.admit(FakeConnection("later"), "192.0.2.1")
    assert len(caplog.records) == 2
    assert "500 connections refused" in caplog.records[1].getMessage()


def test_the_cap_stays_under_the_open_file_limit() -> None:
    assert connection_cap(4096, open_files=1024, reserved=512) == 512
    assert connection_cap(100, open_files=1 << 20, reserved=512) == 100
    with pytest.raises(ValueError, match="ulimit"):
        connection_cap(4096, open_files=520, reserved=512)


def test_settings_refuse_a_per_client_limit_above_the_total() -> None:
    with pytest.raises(ConfigError, match="max_connections_per_client"):
        load_settings(
            overrides={"server": {"max_connections": 100, "max_connections_per_client": 200}}
        )
    with pytest.raises(ConfigError, match="reserved_file_descriptors"):
        load_settings(overrides={"server": {"reserved_file_descriptors": 10}})
