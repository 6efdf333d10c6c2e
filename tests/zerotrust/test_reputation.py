"""The reputation signals (zerotrust/signals/reputation.py) against a real failure log: a
credential-stuffing address is denied for every username, a mistyped password is forgiven,
an attacked username asks for a second factor, and it all fades with time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import FakeClock
from wakedock.zerotrust.base import Attempt, Purpose
from wakedock.zerotrust.history import SignInFailures
from wakedock.zerotrust.signals.reputation import AddressReputation, UsernameReputation

# The engine's default thresholds (weights 1.0): what the scale of these signals assumes.
STEP_UP_AT, DENY_AT = 50.0, 100.0
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
STUFFER = "203.0.113.66"
HOME = "198.51.100.7"


@pytest.fixture
def failures(factory: sessionmaker[Session]) -> SignInFailures:
    return SignInFailures(factory)


def attempt(clock: FakeClock, address: str, username: str) -> Attempt:
    return Attempt(Purpose.SIGN_IN, address, clock.now(), username=username)


def score(signal: AddressReputation | UsernameReputation, a: Attempt) -> float:
    found = signal.weigh(a)
    return 0.0 if found is None else found.score


@pytest.mark.security
def test_the_address_of_20_failures_over_many_usernames_is_denied_for_the_others(
    failures: SignInFailures,
) -> None:
    clock = FakeClock(T0)
    for n in range(20):
        failures.record_failure(STUFFER, f"user{n}", clock.now())
        clock.advance(30)
    found = AddressReputation(failures).weigh(attempt(clock, STUFFER, "alice"))
    assert found is not None
    assert found.score >= DENY_AT
    assert found.reason == f"20 failed sign-ins from {STUFFER} in the last 24 h, for 20 username(s)"
    # The usernames it tried carry a failure each: not enough to bother their owners.
    assert score(UsernameReputation(failures), attempt(clock, HOME, "user3")) < STEP_UP_AT
    # Elsewhere, nothing.
    assert AddressReputation(failures).weigh(attempt(clock, HOME, "alice")) is None


def test_a_user_who_mistyped_twice_is_let_through(failures: SignInFailures) -> None:
    clock = FakeClock(T0)
    failures.record_failure(HOME, "alice", clock.now())
    clock.advance(20)
    failures.record_failure(HOME, "alice", clock.now())
    clock.advance(20)
    again = attempt(clock, HOME, "alice")
    by_address, by_username = AddressReputation(failures), UsernameReputation(failures)
    assert 0 < score(by_address, again) + score(by_username, again) < STEP_UP_AT


@pytest.mark.security
def test_a_username_attacked_from_many_addresses_is_stepped_up_never_denied(
    failures: SignInFailures,
) -> None:
    clock = FakeClock(T0)
    for n in range(40):
        failures.record_failure(f"192.0.2.{n + 1}", "Alice", clock.now())
        clock.advance(15)
    found = UsernameReputation(failures).weigh(attempt(clock, HOME, "alice"))
    assert found is not None
    # The owner is asked for a second factor; failing on purpose cannot lock them out.
    assert STEP_UP_AT <= found.score < DENY_AT
    assert (
        found.reason == "40 failed sign-ins for this username in the last 24 h, from 40 address(es)"
    )
    assert UsernameReputation(failures).weigh(attempt(clock, HOME, "bob")) is None


def test_failures_fade_by_half_each_half_life_and_are_forgotten(
    failures: SignInFailures,
) -> None:
    clock = FakeClock(T0)
    for n in range(10):
        failures.record_failure(STUFFER, f"user{n}", clock.now())
    # The failures' count alone here (their spread over usernames: the next test).
    counted = AddressReputation(failures, spread_points=0)
    assert score(counted, attempt(clock, STUFFER, "alice")) == pytest.approx(60.0)
    clock.advance(3600)
    assert score(counted, attempt(clock, STUFFER, "alice")) == pytest.approx(30.0)
    clock.advance(9 * 3600)
    assert counted.weigh(attempt(clock, STUFFER, "alice")) is None


@pytest.mark.security
def test_many_usernames_from_one_address_weigh_more_than_one_mistyped_often(
    failures: SignInFailures,
) -> None:
    clock = FakeClock(T0)
    # One person mistyping five times: 30 points, let through.
    for _ in range(5):
        failures.record_failure(HOME, "alice", clock.now())
    assert score(AddressReputation(failures), attempt(clock, HOME, "alice")) == pytest.approx(30.0)
    # Two people behind one office address who each mistype once: 12 + 8, let through.
    office = "198.51.100.20"
    failures.record_failure(office, "alice", clock.now())
    failures.record_failure(office, "bob", clock.now())
    assert score(AddressReputation(failures), attempt(clock, office, "carol")) == pytest.approx(
        20.0
    )
    # Five usernames in a row from one address: 30 + 4 * 8, a second factor for the next one.
    for n in range(5):
        failures.record_failure(STUFFER, f"user{n}", clock.now())
    stuffing = score(AddressReputation(failures), attempt(clock, STUFFER, "carol"))
    assert stuffing == pytest.approx(62.0)
    assert STEP_UP_AT <= stuffing < DENY_AT
    # The spread counts within one half-life only; the count keeps fading as before.
    clock.advance(3601)
    assert score(AddressReputation(failures), attempt(clock, STUFFER, "carol")) < 16
