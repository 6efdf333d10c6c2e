"""AddressRanges: membership by binary search over merged intervals, IPv4 and IPv6."""

from __future__ import annotations

import ipaddress
import random

from wakedock.zerotrust.ranges import AddressRanges, is_public


def test_membership_at_the_edges_of_each_network() -> None:
    ranges = AddressRanges.from_strings(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.1.0.0/16"])
    assert len(ranges) == 4
    assert "10.0.0.0" in ranges and "10.255.255.255" in ranges
    assert "11.0.0.0" not in ranges and "9.255.255.255" not in ranges
    assert "192.0.2.7" in ranges and "192.0.2.8" not in ranges
    assert "2001:db8:ffff::1" in ranges and "2001:db9::" not in ranges
    # An IPv4-mapped IPv6 address is its IPv4 address; garbage is in nothing.
    assert "::ffff:10.2.3.4" in ranges
    assert "not an address" not in ranges and "" not in ranges


def test_thousands_of_ranges_agree_with_a_linear_scan() -> None:
    rng = random.Random(18)  # noqa: S311 - a repeatable sample, not a secret
    networks = [
        ipaddress.IPv4Network((rng.getrandbits(32), rng.randint(12, 32)), strict=False)
        for _ in range(2000)
    ]
    ranges = AddressRanges(networks)
    bounds = [(int(n.network_address), int(n.broadcast_address)) for n in networks]
    probes = [rng.getrandbits(32) for _ in range(300)]
    for network in networks[:300]:
        # Each edge, and one past it: where merging overlapping intervals could go wrong.
        probes += [int(network.network_address) - 1, int(network.broadcast_address) + 1]
    hits = 0
    for probe in probes:
        if not 0 <= probe < 2**32:
            continue
        expected = any(start <= probe <= end for start, end in bounds)
        hits += expected
        assert (str(ipaddress.IPv4Address(probe)) in ranges) is expected
    assert 0 < hits < len(probes)


def test_public_means_globally_routable() -> None:
    assert is_public("8.8.8.8") and is_public("2001:4860:4860::8888")
    for address in ("10.1.2.3", "127.0.0.1", "::1", "169.254.1.1", "192.0.2.1", "fc00::1", "x"):
        assert not is_public(address)
