"""The network signal: deny list, allow list, trusted networks."""

from __future__ import annotations

from datetime import UTC, datetime

from wakedock.zerotrust.base import Attempt, Decision, Finding, Purpose
from wakedock.zerotrust.ranges import AddressRanges
from wakedock.zerotrust.signals.network import NetworkSignal


def weigh(signal: NetworkSignal, address: str) -> Finding | None:
    return signal.weigh(Attempt(Purpose.SIGN_IN, address, datetime(2026, 12, 1, tzinfo=UTC)))


def ranges(*cidrs: str) -> AddressRanges:
    return AddressRanges.from_strings(cidrs)


def test_nothing_configured_nothing_found() -> None:
    assert weigh(NetworkSignal(), "198.51.100.1") is None


def test_a_deny_listed_address_is_a_decisive_deny_even_inside_the_allow_list() -> None:
    signal = NetworkSignal(deny=ranges("198.51.100.0/28"), allow=ranges("198.51.100.0/24"))
    denied = weigh(signal, "198.51.100.3")
    assert denied == Finding("network", 100, "the address is on the network deny list",
                             Decision.DENY)  # fmt: skip
    allowed = weigh(signal, "198.51.100.30")
    assert allowed is not None and allowed.decisive is Decision.ALLOW and allowed.score == 0
    assert weigh(signal, "203.0.113.1") is None


def test_a_trusted_network_lowers_the_score_and_decides_nothing() -> None:
    signal = NetworkSignal(trusted=ranges("2001:db8::/48"))
    found = weigh(signal, "2001:db8::42")
    assert found == Finding("network", -30, "the address is in a trusted network")
    assert weigh(signal, "2001:db8:1::42") is None
    both = NetworkSignal(trusted=ranges("10.0.0.0/8"), allow=ranges("10.0.0.0/8"))
    found = weigh(both, "10.1.1.1")
    assert found is not None and (found.score, found.decisive) == (-30, Decision.ALLOW)
    assert found.reason.endswith("; a trusted network")
