"""The sign-in history and the failure log (zerotrust/history.py) on SQLite and PostgreSQL:
what is remembered comes back, and both stay bounded, pruned on write."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.auth.models import User
from wakedock.db import transaction
from wakedock.zerotrust.base import Attempt, Place, Purpose
from wakedock.zerotrust.history import SignInFailures, SignInHistory
from wakedock.zerotrust.models import SignInFailure, SignInRecord

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PARIS = Place(country="FR", latitude=48.8566, longitude=2.3522, accuracy_km=20)


def sign_in(user_id: int, at: datetime, address: str = "198.51.100.7") -> Attempt:
    return Attempt(Purpose.SIGN_IN, address, at, user_id=user_id, place=PARIS)


def rows(factory: sessionmaker[Session], model: type[SignInRecord | SignInFailure]) -> int:
    with factory() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_a_remembered_sign_in_comes_back_with_its_place(
    factory: sessionmaker[Session], make_user: Callable[[str], int]
) -> None:
    history = SignInHistory(factory)
    alice, bob = make_user("alice"), make_user("bob")
    assert not history.has_history(alice)
    history.remember(sign_in(alice, T0), user_agent_family="Firefox")
    history.remember(sign_in(alice, T0 + timedelta(hours=1), "198.51.100.8"))
    last = history.last(alice, at_or_before=T0 + timedelta(hours=2))
    assert last is not None
    assert (last.address, last.place, last.at) == ("198.51.100.8", PARIS, T0 + timedelta(hours=1))
    first = history.last(alice, at_or_before=T0 + timedelta(minutes=5))
    assert first is not None and first.user_agent_family == "Firefox"
    assert history.seen_address(alice, "198.51.100.7")
    assert not history.seen_address(bob, "198.51.100.7")
    assert history.countries(alice) == {"FR"}
    assert history.addresses_since(alice, T0 + timedelta(minutes=30)) == {"198.51.100.8"}
    assert history.times(alice) == [T0, T0 + timedelta(hours=1)]
    assert not history.has_history(bob)


def test_only_a_known_users_sign_in_is_remembered(factory: sessionmaker[Session]) -> None:
    anonymous = Attempt(Purpose.SIGN_IN, "198.51.100.7", T0, username="alice")
    with pytest.raises(ValueError, match="known user"):
        SignInHistory(factory).remember(anonymous)


def test_each_user_keeps_the_last_sign_ins_and_the_recent_ones_only(
    factory: sessionmaker[Session], make_user: Callable[[str], int]
) -> None:
    history = SignInHistory(factory, keep=5, retention=timedelta(days=180))
    alice, bob = make_user("alice"), make_user("bob")
    history.remember(sign_in(bob, T0))
    for n in range(8):
        history.remember(sign_in(alice, T0 + timedelta(hours=n)))
    assert history.times(alice) == [T0 + timedelta(hours=n) for n in range(3, 8)]
    # Half a year later the old rows go with the next sign-in; bob's are not alice's to prune.
    later = T0 + timedelta(days=200)
    history.remember(sign_in(alice, later))
    assert history.times(alice) == [later]
    assert history.times(bob) == [T0]
    # bob never signs in again: the periodic prune takes his rows.
    assert history.prune(later) == 1
    assert rows(factory, SignInRecord) == 1


def test_a_deleted_users_history_goes_with_the_user(
    factory: sessionmaker[Session], make_user: Callable[[str], int]
) -> None:
    history = SignInHistory(factory)
    alice = make_user("alice")
    history.remember(sign_in(alice, T0))
    with transaction(factory) as db:
        db.execute(delete(User).where(User.id == alice))
    assert rows(factory, SignInRecord) == 0


def test_failures_are_read_by_address_and_username_and_pruned_after_a_day(
    factory: sessionmaker[Session],
) -> None:
    failures = SignInFailures(factory, retention=timedelta(hours=24))
    failures.record_failure("203.0.113.9", "Alice", T0)
    failures.record_failure("203.0.113.9", "bob", T0 + timedelta(minutes=1))
    failures.record_failure("192.0.2.4", "alice", T0 + timedelta(minutes=2))
    from_address = failures.from_address("203.0.113.9", T0)
    assert [(f.username, f.at) for f in from_address] == [
        ("bob", T0 + timedelta(minutes=1)),
        ("alice", T0),
    ]
    # Usernames are case-insensitive, as accounts are.
    assert {f.address for f in failures.for_username("ALICE", T0)} == {"203.0.113.9", "192.0.2.4"}
    assert failures.from_address("203.0.113.9", T0 + timedelta(seconds=30))[0].username == "bob"
    failures.record_failure("192.0.2.5", "carol", T0 + timedelta(hours=25))
    assert rows(factory, SignInFailure) == 1
