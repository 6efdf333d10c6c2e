"""`build_engine` with the database: every signal the settings describe, and the behaviour
settings reaching the signals (a journey judged by the configured speed limit)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from wakedock.config import ZeroTrustSettings
from wakedock.zerotrust.base import Attempt, Decision, Place, Purpose
from wakedock.zerotrust.build import build_engine
from wakedock.zerotrust.history import SignInFailures, SignInHistory

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PARIS = Place(country="FR", latitude=48.8566, longitude=2.3522, accuracy_km=20)
NEW_YORK = Place(country="US", latitude=40.7128, longitude=-74.0060, accuracy_km=20)
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
HEADERS = {"accept": "text/html", "accept-language": "en"}


def attempt(user_id: int, address: str, place: Place, at: datetime) -> Attempt:
    return Attempt(
        Purpose.SIGN_IN, address, at, user_agent=CHROME, headers=HEADERS, username="alice",
        user_id=user_id, place=place,
    )  # fmt: skip


def test_the_engine_has_every_signal_and_the_configured_speed_limit(
    factory: sessionmaker[Session], make_user: Callable[[str], int]
) -> None:
    alice = make_user("alice")
    SignInHistory(factory).remember(attempt(alice, "198.51.100.7", PARIS, T0))
    # Paris to New York in 10 hours: about 570 km/h.
    there = attempt(alice, "203.0.113.50", NEW_YORK, T0 + timedelta(hours=10))

    by_default = build_engine(ZeroTrustSettings(), factory=factory).assess(there)
    assert "impossible_travel" in {f.signal for f in by_default.findings}
    assert by_default.decision is Decision.STEP_UP

    flights = ZeroTrustSettings.model_validate({"behaviour": {"max_speed_kmh": 1000}})
    assessed = build_engine(flights, factory=factory).assess(there)
    assert "impossible_travel" not in {f.signal for f in assessed.findings}
    assert assessed.decision is Decision.ALLOW


def test_failures_fade_at_the_configured_half_life(
    factory: sessionmaker[Session], make_user: Callable[[str], int]
) -> None:
    failures = SignInFailures(factory)
    # One username, so that only the failures' count (not their spread) counts here.
    for _ in range(20):
        failures.record_failure("203.0.113.9", "mallory", T0)
    bob = make_user("bob")
    later = Attempt(
        Purpose.SIGN_IN, "203.0.113.9", T0 + timedelta(minutes=30), user_agent=CHROME,
        headers=HEADERS, username="bob", user_id=bob,
    )  # fmt: skip
    fast = ZeroTrustSettings.model_validate({"behaviour": {"failure_half_life_minutes": 10}})
    # 20 failures of 6 points, half an hour later: about 85 with the hour's half-life (a
    # step-up), about 15 with ten minutes'.
    assert build_engine(ZeroTrustSettings(), factory=factory).assess(later).decision is (
        Decision.STEP_UP
    )
    assert build_engine(fast, factory=factory).assess(later).decision is Decision.ALLOW
    at_once = Attempt(
        Purpose.SIGN_IN, "203.0.113.9", T0 + timedelta(minutes=1), user_agent=CHROME,
        headers=HEADERS, username="bob", user_id=bob,
    )  # fmt: skip
    assert build_engine(fast, factory=factory).assess(at_once).decision is Decision.DENY
