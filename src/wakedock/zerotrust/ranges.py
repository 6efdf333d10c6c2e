"""A set of IP networks asked "is this address in it?" thousands of times a second.

Networks are merged into sorted, non-overlapping integer intervals per IP version, so a lookup
is one binary search whatever the number of networks (a Tor exit list has ~1,500 entries, a
VPN provider's several thousand); `ipaddress` objects in a list would be a linear scan.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) read as their IPv4 form;
    None when it is not an address at all."""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def is_public(address: str) -> bool:
    """True for a globally routable address (not private, loopback, link-local, reserved)."""
    parsed = parse_address(address)
    return parsed is not None and parsed.is_global


class AddressRanges:
    """Immutable; build a new one to change it (the anonymiser list swaps it on reload)."""

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        by_version: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for network in networks:
            by_version[network.version].append(
                (int(network.network_address), int(network.broadcast_address))
            )
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        self._count = 0
        for version, intervals in by_version.items():
            merged: list[tuple[int, int]] = []
            for start, end in sorted(intervals):
                if merged and start <= merged[-1][1] + 1:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
            self._starts[version] = [start for start, _ in merged]
            self._ends[version] = [end for _, end in merged]
            self._count += len(intervals)

    @classmethod
    def from_strings(cls, cidrs: Iterable[str]) -> AddressRanges:
        """From CIDRs or single addresses already validated (the settings check them)."""
        return cls(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)

    def __len__(self) -> int:
        """How many networks it was built from (before merging)."""
        return self._count

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        parsed = parse_address(address)
        if parsed is None:
            return False
        starts = self._starts[parsed.version]
        index = bisect_right(starts, int(parsed)) - 1
        return index >= 0 and int(parsed) <= self._ends[parsed.version][index]
