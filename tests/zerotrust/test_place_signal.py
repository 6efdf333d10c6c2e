"""The place signal: country allow/deny lists, the ASN deny list, an unknown country."""

from __future__ import annotations

from datetime import UTC, datetime

from wakedock.zerotrust.base import Attempt, Decision, Finding, Place, Purpose
from wakedock.zerotrust.ranges import AddressRanges
from wakedock.zerotrust.signals.place import PlaceSignal

PUBLIC = "8.8.8.8"


def weigh(signal: PlaceSignal, place: Place, address: str = PUBLIC) -> Finding | None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return signal.weigh(Attempt(Purpose.SIGN_IN, address, at, place=place))


def test_a_deny_listed_country_is_denied_others_pass() -> None:
    signal = PlaceSignal(deny_countries=["KP", "ru"])
    assert weigh(signal, Place(country="RU")) == Finding(
        "place", 100, "country RU is on the deny list", Decision.DENY
    )
    assert weigh(signal, Place(country="DE")) is None


def test_an_allow_list_denies_every_other_known_country_and_only_scores_an_unknown_one() -> None:
    signal = PlaceSignal(allow_countries=["DE", "FR"], unknown_country_score=15)
    assert weigh(signal, Place(country="FR")) is None
    outside = weigh(signal, Place(country="US"))
    assert outside is not None and outside.decisive is Decision.DENY
    assert outside.reason == "country US is not on the allow list"
    assert weigh(signal, Place()) == Finding("place", 15, "no database knows the country")


def test_an_asn_on_the_deny_list_is_denied_naming_its_owner() -> None:
    signal = PlaceSignal(deny_asns=[14061])
    found = weigh(signal, Place(country="NL", asn=14061, organisation="DIGITALOCEAN-ASN"))
    assert found is not None and found.decisive is Decision.DENY
    assert found.reason == "network AS14061 (DIGITALOCEAN-ASN) is on the ASN deny list"
    assert weigh(signal, Place(country="NL", asn=3320)) is None


def test_private_and_allow_listed_addresses_are_not_weighed_here() -> None:
    signal = PlaceSignal(allow_countries=["DE"], exempt=AddressRanges.from_strings(["8.8.8.0/24"]))
    # A private address has no place: neither unknown nor outside the allow list.
    assert weigh(signal, Place(), address="10.0.0.5") is None
    assert weigh(signal, Place(), address="::1") is None
    # The admin's network allow list beats the country allow list.
    assert weigh(signal, Place(country="US")) is None
    assert weigh(signal, Place(country="US"), address="9.9.9.9") is not None


def test_an_unknown_country_can_cost_nothing() -> None:
    assert weigh(PlaceSignal(unknown_country_score=0), Place()) is None
