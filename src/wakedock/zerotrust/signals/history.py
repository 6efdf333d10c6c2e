"""Behaviour signals: this attempt against the user's own past sign-ins (`SignInHistory`).

Scale (the engine's defaults: weights 1.0, step_up at 50, deny at 100). Behaviour alone
should ask for a fresh second factor, not lock a user out: each signal alone stays below
`deny_at`, impossible travel and a never-used hour reach `step_up_at` alone, and a new address
or country only adds to other evidence. A session jumping continents within minutes (new
address 5 + new country 20 + impossible travel 50 = 75) is stepped up, and with a browser the
user never used (20) it is 95, still a step-up: a deny needs a network, client or reputation
signal.

A user with no history (a first sign-in, an attempt with no user yet) gets no behaviour
finding: nothing is unusual for someone with no usual.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from wakedock.zerotrust.base import Attempt, Finding, Place
from wakedock.zerotrust.history import SignInHistory
from wakedock.zerotrust.signals.client import browser_of

EARTH_RADIUS_KM = 6371.0088


def distance_km(a: Place, b: Place) -> float | None:
    """Great-circle (haversine) distance between two places, None without coordinates."""
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        return None
    lat1, lon1, lat2, lon2 = (
        math.radians(v) for v in (a.latitude, a.longitude, b.latitude, b.longitude)
    )
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def describe(address: str, place: Place) -> str:
    """`203.0.113.7 (FR 48.86,2.35)`: what a reader of the audit trail needs to place it."""
    where = [place.country or "unknown country"]
    if place.latitude is not None and place.longitude is not None:
        where.append(f"{place.latitude:.2f},{place.longitude:.2f}")
    return f"{address} ({' '.join(where)})"


def _duration(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h"


class NewAddress:
    """An address the user has never signed in from: mild, addresses change (mobile, DHCP)."""

    name = "new_address"

    def __init__(self, history: SignInHistory, *, score: float = 5.0) -> None:
        self._history = history
        self.score = score

    def weigh(self, attempt: Attempt) -> Finding | None:
        user_id = attempt.user_id
        if user_id is None or not self._history.has_history(user_id):
            return None
        if self._history.seen_address(user_id, attempt.address):
            return None
        return Finding(self.name, self.score, f"first sign-in from {attempt.address}")


class NewCountry:
    """A country the user has never signed in from: stronger than a new address, still not
    enough alone for a second factor (people travel)."""

    name = "new_country"

    def __init__(self, history: SignInHistory, *, score: float = 20.0) -> None:
        self._history = history
        self.score = score

    def weigh(self, attempt: Attempt) -> Finding | None:
        country = attempt.place.country
        if attempt.user_id is None or country is None:
            return None
        # Empty when there is no history, or none of it could be placed: nothing to compare.
        known = self._history.countries(attempt.user_id)
        if not known or country in known:
            return None
        usual = ", ".join(sorted(known))
        return Finding(self.name, self.score, f"first sign-in from {country} (before: {usual})")


class NewBrowser:
    """A browser family the user never signed in with (a new device, or someone else's): a
    mild score that only adds to other evidence (failures from the address, a tool's user
    agent): a new browser (`score`, 20) with a new country (20) and a new address (5) is 45,
    and with impossible travel (50) too it is 95, still below a deny: behaviour alone never
    locks a user out. Users who never had a
    browser named (API clients) are not judged."""

    name = "new_browser"

    def __init__(self, history: SignInHistory, *, score: float = 20.0) -> None:
        self._history = history
        self.score = score

    def weigh(self, attempt: Attempt) -> Finding | None:
        if attempt.user_id is None or not attempt.user_agent:
            return None
        family = browser_of(attempt.user_agent)[0]
        known = self._history.browsers(attempt.user_id)
        if family is None or not known or family in known:
            return None
        usual = ", ".join(sorted(known))
        return Finding(self.name, self.score, f"first sign-in with {family} (usual: {usual})")


class ImpossibleTravel:
    """The user could not have travelled from the last sign-in's place to this one in the time
    between them (Curity's impossible journey, authentik's tolerance).

    `max_speed_kmh` (250, Curity's default) is the fastest believable journey; a flight is
    faster, raise it (about 1000) where users sign in on both sides of a flight.
    `tolerance_km` (100) plus both places' accuracy radius is subtracted from the distance
    first: a city-level database places one user tens of kilometres apart.
    Skipped when either place has no coordinates.
    """

    name = "impossible_travel"

    def __init__(
        self,
        history: SignInHistory,
        *,
        score: float = 50.0,
        max_speed_kmh: float = 250.0,
        tolerance_km: float = 100.0,
    ) -> None:
        self._history = history
        self.score = score
        self.max_speed_kmh = max_speed_kmh
        self.tolerance_km = tolerance_km

    def weigh(self, attempt: Attempt) -> Finding | None:
        if attempt.user_id is None or attempt.place.latitude is None:
            return None
        last = self._history.last(attempt.user_id, at_or_before=attempt.at)
        if last is None:
            return None
        distance = distance_km(last.place, attempt.place)
        if distance is None:
            return None
        allowance = (
            self.tolerance_km + (last.place.accuracy_km or 0.0) + (attempt.place.accuracy_km or 0.0)
        )
        beyond = distance - allowance
        if beyond <= 0:
            return None
        elapsed = attempt.at - last.at
        hours = elapsed.total_seconds() / 3600
        speed = beyond / hours if hours > 0 else math.inf
        if speed <= self.max_speed_kmh:
            return None
        shown = "at once" if math.isinf(speed) else f"{speed:,.0f} km/h"
        reason = (
            f"{describe(last.address, last.place)} to {describe(attempt.address, attempt.place)}"
            f" in {_duration(elapsed)}: {distance:,.0f} km ({beyond:,.0f} beyond the"
            f" {allowance:,.0f} km tolerance), {shown} above {self.max_speed_kmh:,.0f} km/h"
        )
        return Finding(self.name, self.score, reason)


class RapidAddressChange:
    """Several distinct addresses for one user within a short window (a session handed
    around, or someone hopping proxies): `addresses` (4, this attempt's included) within
    `window` (1 h). A phone moving between Wi-Fi and mobile data makes 2 or 3."""

    name = "rapid_address_change"

    def __init__(
        self,
        history: SignInHistory,
        *,
        score: float = 25.0,
        addresses: int = 4,
        window: timedelta = timedelta(hours=1),
    ) -> None:
        self._history = history
        self.score = score
        self.addresses = addresses
        self.window = window

    def weigh(self, attempt: Attempt) -> Finding | None:
        if attempt.user_id is None:
            return None
        recent = self._history.addresses_since(attempt.user_id, attempt.at - self.window)
        seen = recent | {attempt.address}
        if len(seen) < self.addresses:
            return None
        return Finding(
            self.name,
            self.score,
            f"{len(seen)} addresses in the last {_duration(self.window)}",
        )


class UnusualHour:
    """A sign-in at an hour of the day the user has never used, once the user has a history
    long enough to have habits: at least `min_sign_ins` (20) over at least `min_days` (30).

    Hours are counted in `zone` (UTC; a team in one place may set its own zone so the reason
    reads in local time), and an hour within `spread_hours` (1) of a used one is familiar:
    someone who signs in from 08:00 to 17:00 is not unusual at 18:00. The default score
    reaches step_up alone and never deny: a first 3 a.m. sign-in asks for a second factor.
    """

    name = "unusual_hour"

    def __init__(
        self,
        history: SignInHistory,
        *,
        score: float = 50.0,
        min_sign_ins: int = 20,
        min_days: int = 30,
        spread_hours: int = 1,
        zone: str = "UTC",
    ) -> None:
        self._history = history
        self.score = score
        self.min_sign_ins = min_sign_ins
        self.min_days = min_days
        self.spread_hours = spread_hours
        self.zone = ZoneInfo(zone)

    def weigh(self, attempt: Attempt) -> Finding | None:
        if attempt.user_id is None:
            return None
        times = [t for t in self._history.times(attempt.user_id) if t <= attempt.at]
        if len(times) < self.min_sign_ins:
            return None
        if attempt.at - times[0] < timedelta(days=self.min_days):
            return None
        used = {self._hour(t) for t in times}
        familiar = {
            (hour + shift) % 24
            for hour in used
            for shift in range(-self.spread_hours, self.spread_hours + 1)
        }
        hour = self._hour(attempt.at)
        if hour in familiar:
            return None
        days = (attempt.at - times[0]).days
        reason = (
            f"sign-in at {hour:02d}h {self.zone.key}, an hour not used in {len(times)}"
            f" sign-ins over {days} days (usual: {_hour_ranges(used)})"
        )
        return Finding(self.name, self.score, reason)

    def _hour(self, at: datetime) -> int:
        return at.astimezone(self.zone).hour


def _hour_ranges(hours: set[int]) -> str:
    """{8, 9, 10, 14} -> "08-10h, 14h"."""
    runs: list[list[int]] = []
    for hour in sorted(hours):
        if runs and hour == runs[-1][-1] + 1:
            runs[-1].append(hour)
        else:
            runs.append([hour])
    return ", ".join(
        f"{run[0]:02d}h" if len(run) == 1 else f"{run[0]:02d}-{run[-1]:02d}h" for run in runs
    )
