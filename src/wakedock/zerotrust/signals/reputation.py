"""Reputation signals: recent failed sign-ins from this address and for this username
(`SignInFailures`), each failure's weight halving every `half_life`, as authentik's
reputation policy scores addresses and usernames from their failures, but decaying on its own.

Scale (the engine's defaults: weights 1.0, step_up at 50, deny at 100): an address behind a
burst of about 17 failures or more (6 points each, 20 in a few minutes is well past it) is
denied for every username; one who mistyped twice scores 12 and is let through. A username
attacked from many addresses scores 5 a failure but at most `max_score` (60): a second factor
is asked for, never a deny, so an attacker cannot lock the real user out by failing on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from wakedock.zerotrust.base import Attempt, Finding
from wakedock.zerotrust.history import Failure, SignInFailures


def decayed(failures: Sequence[Failure], at: datetime, half_life: timedelta) -> float:
    """How many failures these weigh at `at`: 1 each when fresh, 1/2 after one half-life."""
    seconds = half_life.total_seconds()
    return sum(math.pow(0.5, max(0.0, (at - f.at).total_seconds()) / seconds) for f in failures)


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


class AddressReputation:
    """Failed sign-ins from the attempt's address, for any username.

    `points` (6) per fresh failure, halving every `half_life` (1 h); nothing below
    `ignore_below` (1 point: a failure long decayed). Many usernames from one address is
    credential stuffing, not one person who forgot: `spread_points` (8) more for each distinct
    username beyond the first that failed within the last `half_life` (two people behind one
    office address who both mistype score 20, still let through).
    """

    name = "address_reputation"

    def __init__(
        self,
        failures: SignInFailures,
        *,
        points: float = 6.0,
        spread_points: float = 8.0,
        half_life: timedelta = timedelta(hours=1),
        ignore_below: float = 1.0,
    ) -> None:
        self._failures = failures
        self.points = points
        self.spread_points = spread_points
        self.half_life = half_life
        self.ignore_below = ignore_below

    def weigh(self, attempt: Attempt) -> Finding | None:
        since = attempt.at - self._failures.retention
        failures = self._failures.from_address(attempt.address, since)
        recent = {f.username for f in failures if attempt.at - f.at <= self.half_life}
        score = self.points * decayed(failures, attempt.at, self.half_life)
        score += self.spread_points * max(0, len(recent) - 1)
        if score < self.ignore_below:
            return None
        usernames = len({f.username for f in failures})
        reason = (
            f"{len(failures)} failed sign-ins from {attempt.address} in the last"
            f" {_hours(self._failures.retention)}, for {usernames} username(s)"
        )
        return Finding(self.name, round(score, 1), reason)


class UsernameReputation:
    """Failed sign-ins for the attempt's username, from any address.

    `points` (5) per fresh failure, halving every `half_life` (1 h), capped at `max_score`
    (60: step_up, not deny, so failing on purpose cannot lock the owner out).
    """

    name = "username_reputation"

    def __init__(
        self,
        failures: SignInFailures,
        *,
        points: float = 5.0,
        half_life: timedelta = timedelta(hours=1),
        max_score: float = 60.0,
        ignore_below: float = 1.0,
    ) -> None:
        self._failures = failures
        self.points = points
        self.half_life = half_life
        self.max_score = max_score
        self.ignore_below = ignore_below

    def weigh(self, attempt: Attempt) -> Finding | None:
        if not attempt.username:
            return None
        since = attempt.at - self._failures.retention
        failures = self._failures.for_username(attempt.username, since)
        score = min(self.max_score, self.points * decayed(failures, attempt.at, self.half_life))
        if score < self.ignore_below:
            return None
        addresses = len({f.address for f in failures})
        reason = (
            f"{len(failures)} failed sign-ins for this username in the last"
            f" {_hours(self._failures.retention)}, from {addresses} address(es)"
        )
        return Finding(self.name, round(score, 1), reason)
