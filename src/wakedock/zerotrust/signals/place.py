"""Place: country allow and deny lists, an ASN deny list (hosting providers, say), and what an
unknown country costs.

A country allow list means "only from these countries": any other known country is denied. An
address whose country no database knows (a new allocation, a satellite link) is not denied by
either list, only scored (`unknown_country_score`): refusing it would lock out the people the
databases are wrong about, and an attacker picks a known country anyway. Private and loopback
addresses have no place and are not weighed here at all. Addresses in `exempt` (the network
allow list) are never denied by this signal.
"""

from __future__ import annotations

from collections.abc import Collection

from wakedock.zerotrust.base import Attempt, Decision, Finding
from wakedock.zerotrust.ranges import AddressRanges, is_public

DENY_SCORE = 100.0


class PlaceSignal:
    name = "place"

    def __init__(
        self,
        *,
        allow_countries: Collection[str] = (),
        deny_countries: Collection[str] = (),
        deny_asns: Collection[int] = (),
        unknown_country_score: float = 10.0,
        exempt: AddressRanges | None = None,
    ) -> None:
        self._allow = frozenset(code.upper() for code in allow_countries)
        self._deny = frozenset(code.upper() for code in deny_countries)
        self._deny_asns = frozenset(deny_asns)
        self._unknown_score = unknown_country_score
        self._exempt = exempt or AddressRanges()

    def weigh(self, attempt: Attempt) -> Finding | None:
        if not is_public(attempt.address) or attempt.address in self._exempt:
            return None
        place = attempt.place
        country = place.country.upper() if place.country else None
        if country is not None and country in self._deny:
            return self._deny_finding(f"country {country} is on the deny list")
        if country is not None and self._allow and country not in self._allow:
            return self._deny_finding(f"country {country} is not on the allow list")
        if place.asn is not None and place.asn in self._deny_asns:
            owner = f" ({place.organisation})" if place.organisation else ""
            return self._deny_finding(f"network AS{place.asn}{owner} is on the ASN deny list")
        if country is None and self._unknown_score:
            return Finding(self.name, self._unknown_score, "no database knows the country")
        return None

    def _deny_finding(self, reason: str) -> Finding:
        return Finding(self.name, DENY_SCORE, reason, decisive=Decision.DENY)
