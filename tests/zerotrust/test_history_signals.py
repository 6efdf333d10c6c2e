"""The behaviour signals (zerotrust/signals/history.py) against a real sign-in history: what
each finds, what it lets pass, and that behaviour alone steps a user up but does not deny."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import FakeClock
from wakedock.zerotrust.base import Attempt, Finding, Place, Purpose, Signal
from wakedock.zerotrust.history import SignInHistory
from wakedock.zerotrust.signals.history import (
    ImpossibleTravel,
    NewAddress,
    NewBrowser,
    NewCountry,
    RapidAddressChange,
    UnusualHour,
)

# The engine's default thresholds (weights 1.0): what the scale of these signals assumes.
STEP_UP_AT, DENY_AT = 50.0, 100.0
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HOME = "198.51.100.7"
PARIS = Place(country="FR", latitude=48.8566, longitude=2.3522, accuracy_km=20)
VERSAILLES = Place(country="FR", latitude=48.8049, longitude=2.1204, accuracy_km=20)
LYON = Place(country="FR", latitude=45.7640, longitude=4.8357, accuracy_km=20)
NEW_YORK = Place(country="US", latitude=40.7128, longitude=-74.0060, accuracy_km=20)


class User:
    """One user signing in through a history, on a fake clock."""

    def __init__(self, history: SignInHistory, user_id: int, clock: FakeClock) -> None:
        self.history, self.id, self.clock = history, user_id, clock

    def attempt(self, address: str = HOME, place: Place = PARIS) -> Attempt:
        return Attempt(
            Purpose.SIGN_IN, address, self.clock.now(), username="alice", user_id=self.id,
            place=place,
        )  # fmt: skip

    def signs_in(self, address: str = HOME, place: Place = PARIS) -> None:
        self.history.remember(self.attempt(address, place))


@pytest.fixture
def alice(factory: sessionmaker[Session], make_user: Callable[[str], int]) -> User:
    return User(SignInHistory(factory), make_user("alice"), FakeClock(T0))


def signals(history: SignInHistory) -> list[Signal]:
    return [
        NewAddress(history),
        NewCountry(history),
        ImpossibleTravel(history),
        RapidAddressChange(history),
        UnusualHour(history),
    ]


def findings(user: User, attempt: Attempt) -> list[Finding]:
    return [f for s in signals(user.history) if (f := s.weigh(attempt)) is not None]


def test_a_first_sign_in_is_not_suspicious_by_itself(alice: User) -> None:
    alice.clock.advance(-6 * 3600)  # 03:00, from far away: nothing to compare with
    assert findings(alice, alice.attempt("203.0.113.50", NEW_YORK)) == []
    # Before the password is checked there is no user yet: nothing to compare with either.
    alice.signs_in()
    alice.clock.advance(60)
    unknown = Attempt(Purpose.SIGN_IN, "203.0.113.50", alice.clock.now(), place=NEW_YORK)
    assert findings(alice, unknown) == []


def test_a_new_address_scores_mildly_and_a_known_one_not_at_all(alice: User) -> None:
    alice.signs_in()
    alice.clock.advance(86400)
    found = NewAddress(alice.history).weigh(alice.attempt("198.51.100.99"))
    assert found is not None
    assert 0 < found.score < STEP_UP_AT
    assert "198.51.100.99" in found.reason
    assert NewAddress(alice.history).weigh(alice.attempt()) is None


def test_a_new_country_scores_more_than_a_new_address(alice: User) -> None:
    alice.signs_in()
    alice.clock.advance(3 * 86400)
    new_address = NewAddress(alice.history).weigh(alice.attempt("203.0.113.50", NEW_YORK))
    found = NewCountry(alice.history).weigh(alice.attempt("203.0.113.50", NEW_YORK))
    assert found is not None and new_address is not None
    assert new_address.score < found.score < STEP_UP_AT
    assert found.reason == "first sign-in from US (before: FR)"
    assert NewCountry(alice.history).weigh(alice.attempt("198.51.100.99", LYON)) is None
    # No country for this address (no database): nothing to say.
    assert NewCountry(alice.history).weigh(alice.attempt("203.0.113.50", Place())) is None


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def test_a_browser_never_used_adds_to_the_evidence(alice: User) -> None:
    with_firefox = replace(alice.attempt(), user_agent=FIREFOX)
    alice.history.remember(with_firefox, user_agent_family="Firefox")
    alice.clock.advance(86400)
    signal = NewBrowser(alice.history)
    assert signal.weigh(replace(alice.attempt(), user_agent=FIREFOX)) is None
    found = signal.weigh(replace(alice.attempt(), user_agent=CHROME))
    assert found is not None
    assert found.reason == "first sign-in with Chrome (usual: Firefox)"
    assert 0 < found.score < STEP_UP_AT
    # Behaviour alone never denies: a new browser, address and country right after a sign-in
    # an ocean away is a second factor asked, not a user locked out.
    alice.history.remember(
        replace(alice.attempt(), user_agent=FIREFOX), user_agent_family="Firefox"
    )
    alice.clock.advance(1800)
    far = replace(alice.attempt("203.0.113.50", NEW_YORK), user_agent=CHROME)
    every = [*signals(alice.history), signal]
    found_far = [f for f in (s.weigh(far) for s in every) if f]
    assert {f.signal for f in found_far} == {
        "new_address",
        "new_country",
        "impossible_travel",
        "new_browser",
    }
    assert STEP_UP_AT <= sum(f.score for f in found_far) < DENY_AT
    # A user whose sign-ins never named a browser (an API client) is not judged.
    alice.signs_in()
    assert signal.weigh(replace(alice.attempt(), user_agent="")) is None


@pytest.mark.security
def test_paris_to_new_york_in_half_an_hour_is_impossible_travel(alice: User) -> None:
    alice.signs_in()
    alice.clock.advance(30 * 60)
    found = ImpossibleTravel(alice.history).weigh(alice.attempt("203.0.113.50", NEW_YORK))
    assert found is not None
    assert found.score >= STEP_UP_AT
    assert found.reason.startswith(
        "198.51.100.7 (FR 48.86,2.35) to 203.0.113.50 (US 40.71,-74.01) in 30 min: 5,837 km"
    )
    assert "11,394 km/h above 250 km/h" in found.reason
    # The whole session jump (new address, new country, impossible travel) is a step-up.
    total = sum(f.score for f in findings(alice, alice.attempt("203.0.113.50", NEW_YORK)))
    assert STEP_UP_AT <= total < DENY_AT


def test_paris_to_new_york_in_a_day_is_possible(alice: User) -> None:
    alice.signs_in()
    alice.clock.advance(24 * 3600)
    assert ImpossibleTravel(alice.history).weigh(alice.attempt("203.0.113.50", NEW_YORK)) is None


def test_ten_hours_is_a_flight_only_above_the_default_speed_limit(alice: User) -> None:
    # 250 km/h (Curity's default) does not allow for planes: 5,837 km in 10 h is 570 km/h.
    alice.signs_in()
    alice.clock.advance(10 * 3600)
    there = alice.attempt("203.0.113.50", NEW_YORK)
    assert ImpossibleTravel(alice.history).weigh(there) is not None
    assert ImpossibleTravel(alice.history, max_speed_kmh=1000).weigh(there) is None


def test_the_tolerance_absorbs_a_citys_spread_and_the_places_accuracy(alice: User) -> None:
    alice.signs_in()
    alice.clock.advance(60)
    # Versailles is 18 km from Paris: 1,000 km/h in a minute, inside the 100 km tolerance.
    assert ImpossibleTravel(alice.history).weigh(alice.attempt("198.51.100.8", VERSAILLES)) is None
    alice.clock.advance(29 * 60)
    lyon = alice.attempt("198.51.100.9", LYON)  # 392 km in 30 min
    assert ImpossibleTravel(alice.history).weigh(lyon) is not None
    assert ImpossibleTravel(alice.history, tolerance_km=300).weigh(lyon) is None
    vague = Place(country="FR", latitude=LYON.latitude, longitude=LYON.longitude, accuracy_km=300)
    assert ImpossibleTravel(alice.history).weigh(alice.attempt("198.51.100.9", vague)) is None


def test_travel_is_not_judged_without_coordinates(alice: User) -> None:
    alice.signs_in(place=Place(country="FR"))
    alice.clock.advance(60)
    assert ImpossibleTravel(alice.history).weigh(alice.attempt("203.0.113.50", NEW_YORK)) is None
    alice.signs_in()
    alice.clock.advance(60)
    assert ImpossibleTravel(alice.history).weigh(alice.attempt("203.0.113.50", Place())) is None


def test_several_addresses_within_the_hour_are_a_rapid_change(alice: User) -> None:
    for n in range(3):
        alice.signs_in(f"198.51.100.{n + 1}")
        alice.clock.advance(10 * 60)
    found = RapidAddressChange(alice.history).weigh(alice.attempt("198.51.100.4"))
    assert found is not None
    assert found.reason == "4 addresses in the last 60 min"
    assert 0 < found.score < STEP_UP_AT
    # Back on a known one, or after the window: a phone between Wi-Fi and mobile data.
    assert RapidAddressChange(alice.history).weigh(alice.attempt("198.51.100.3")) is None
    alice.clock.advance(3600)
    assert RapidAddressChange(alice.history).weigh(alice.attempt("198.51.100.4")) is None


def a_month_of_daytime(user: User) -> None:
    """Sign-ins between 08:00 and 17:00 UTC every day for five weeks."""
    for day in range(35):
        at = T0.replace(hour=8) + timedelta(days=day, hours=day % 10)
        user.history.remember(Attempt(Purpose.SIGN_IN, HOME, at, user_id=user.id, place=PARIS))


@pytest.mark.security
def test_a_first_sign_in_at_3_am_after_a_month_of_daytime_is_stepped_up_not_denied(
    alice: User,
) -> None:
    a_month_of_daytime(alice)
    alice.clock = FakeClock(T0.replace(hour=3) + timedelta(days=35))
    found = UnusualHour(alice.history).weigh(alice.attempt())
    assert found is not None
    assert found.reason == (
        "sign-in at 03h UTC, an hour not used in 35 sign-ins over 34 days (usual: 08-17h)"
    )
    total = sum(f.score for f in findings(alice, alice.attempt()))
    assert STEP_UP_AT <= total < DENY_AT


def test_an_hour_next_to_a_usual_one_or_a_short_history_is_not_unusual(alice: User) -> None:
    a_month_of_daytime(alice)
    alice.clock = FakeClock(T0.replace(hour=18) + timedelta(days=35))
    assert UnusualHour(alice.history).weigh(alice.attempt()) is None
    alice.clock = FakeClock(T0.replace(hour=3) + timedelta(days=35))
    assert UnusualHour(alice.history, min_days=40).weigh(alice.attempt()) is None
    assert UnusualHour(alice.history, min_sign_ins=40).weigh(alice.attempt()) is None
    # 03:00 UTC is 04:00 in Paris in winter: also never used there, and said in that zone.
    found = UnusualHour(alice.history, zone="Europe/Paris").weigh(alice.attempt())
    assert found is not None and found.reason.startswith("sign-in at 04h Europe/Paris")
