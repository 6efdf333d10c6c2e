"""The engine as the settings describe it: the profiles, the place finder, the stateless
signals and, given the database, the behaviour and reputation signals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import Clock
from wakedock.config.zerotrust import ZeroTrustSettings
from wakedock.zerotrust.base import Decision, Purpose, Signal
from wakedock.zerotrust.engine import Profile, ZeroTrustEngine
from wakedock.zerotrust.history import SignInFailures, SignInHistory
from wakedock.zerotrust.places import PlaceFinder
from wakedock.zerotrust.ranges import AddressRanges
from wakedock.zerotrust.signals.anonymisers import AnonymiserSignal
from wakedock.zerotrust.signals.client import HeaderSignal, UserAgentSignal
from wakedock.zerotrust.signals.history import (
    ImpossibleTravel,
    NewAddress,
    NewBrowser,
    NewCountry,
    RapidAddressChange,
    UnusualHour,
)
from wakedock.zerotrust.signals.network import NetworkSignal
from wakedock.zerotrust.signals.place import PlaceSignal
from wakedock.zerotrust.signals.reputation import AddressReputation, UsernameReputation


def profiles_from(settings: ZeroTrustSettings) -> Mapping[Purpose, Profile]:
    """Each purpose's profile, its weights over the section's own."""
    profiles = {}
    for purpose in Purpose:
        given = getattr(settings.profiles, purpose.value)
        profiles[purpose] = Profile(
            step_up_at=given.step_up_at,
            deny_at=given.deny_at,
            weights={**settings.weights, **given.weights},
            on_signal_error=Decision(given.on_signal_error),
        )
    return profiles


def place_finder_from(settings: ZeroTrustSettings) -> PlaceFinder:
    return PlaceFinder(settings.city_database, settings.asn_database)


def stateless_signals(settings: ZeroTrustSettings, clock: Clock | None = None) -> list[Signal]:
    """Network, place, anonymiser (when a file is configured), user agent and headers."""
    allow = AddressRanges.from_strings(settings.allow_networks)
    signals: list[Signal] = [
        NetworkSignal(
            deny=AddressRanges.from_strings(settings.deny_networks),
            allow=allow,
            trusted=AddressRanges.from_strings(settings.trusted_networks),
        ),
        PlaceSignal(
            allow_countries=settings.allow_countries,
            deny_countries=settings.deny_countries,
            deny_asns=settings.deny_asns,
            unknown_country_score=settings.unknown_country_score,
            exempt=allow,
        ),
    ]
    if settings.anonymiser_file is not None:
        signals.append(AnonymiserSignal(settings.anonymiser_file,
                                        deny=settings.anonymisers_deny, exempt=allow,
                                        clock=clock))  # fmt: skip
    signals += [UserAgentSignal(settings.min_browser_versions), HeaderSignal()]
    return signals


def stateful_signals(
    settings: ZeroTrustSettings, history: SignInHistory, failures: SignInFailures
) -> list[Signal]:
    """The user's own history (new address or country, impossible travel, rapid address
    change, unusual hour) and the reputation of an address and a username."""
    rules = settings.behaviour
    half_life = timedelta(minutes=rules.failure_half_life_minutes)
    return [
        NewAddress(history),
        NewCountry(history),
        NewBrowser(history),
        ImpossibleTravel(
            history, max_speed_kmh=rules.max_speed_kmh, tolerance_km=rules.travel_tolerance_km
        ),
        RapidAddressChange(
            history,
            addresses=rules.rapid_change_addresses,
            window=timedelta(minutes=rules.rapid_change_minutes),
        ),
        UnusualHour(
            history,
            min_sign_ins=rules.habit_min_sign_ins,
            min_days=rules.habit_min_days,
            zone=rules.habit_zone,
        ),
        AddressReputation(failures, half_life=half_life),
        UsernameReputation(failures, half_life=half_life),
    ]


def build_engine(
    settings: ZeroTrustSettings,
    extra_signals: Iterable[Signal] = (),
    clock: Clock | None = None,
    factory: sessionmaker[Session] | None = None,
) -> ZeroTrustEngine:
    """The engine, with the behaviour and reputation signals when given the database;
    raises ValueError when a profile weighs a signal that does not exist."""
    signals = [*stateless_signals(settings, clock), *extra_signals]
    if factory is not None:
        signals += stateful_signals(settings, SignInHistory(factory), SignInFailures(factory))
    return ZeroTrustEngine(signals, profiles_from(settings))
