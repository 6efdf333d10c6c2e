"""The `zerotrust` section (docs/zerotrust.md): lists, databases, weights and the thresholds of
each purpose. Its own module: config/sections.py is past the size STYLE.md asks for."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wakedock.config.checks import ip_networks

# The codes a country database may return: ISO 3166-1 alpha-2, plus EU and XK (Kosovo) as
# MaxMind uses them.
_COUNTRY_CODES = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET EU FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK
HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB
LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU
RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN
TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW
"""
COUNTRY_CODES = frozenset(_COUNTRY_CODES.split())

SIGNAL_NAME = re.compile(r"[a-z][a-z_]{0,39}")
OnSignalError = Literal["allow", "step_up", "deny"]

# Stricter purposes have lower thresholds. A failing signal is fail-open on ordinary requests
# and wakes (the session was weighed at sign-in; a broken signal must not take the API or every
# service down) and a step-up elsewhere (whoever can make a signal raise, with a crafted header
# say, must not get past it for free; a person with MFA proves themselves, nobody is locked out).
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sign_in": {"step_up_at": 50.0, "deny_at": 100.0, "on_signal_error": "step_up"},
    "request": {"step_up_at": 60.0, "deny_at": 100.0, "on_signal_error": "allow"},
    "wake": {"step_up_at": 60.0, "deny_at": 100.0, "on_signal_error": "allow"},
    "admin": {"step_up_at": 30.0, "deny_at": 80.0, "on_signal_error": "step_up"},
    "grant_role": {"step_up_at": 20.0, "deny_at": 70.0, "on_signal_error": "step_up"},
    "reveal_secret": {"step_up_at": 20.0, "deny_at": 70.0, "on_signal_error": "step_up"},
}

# The oldest major version accepted per browser family (ua-parser's names): none of these is
# still supported by its vendor, so they get no security fixes. IE: every version.
MIN_BROWSER_VERSIONS = {"Chrome": 100, "Chrome Mobile": 100, "Edge": 100, "Opera": 86,
                        "Firefox": 91, "Firefox Mobile": 91, "Safari": 14, "Mobile Safari": 14,
                        "IE": 12}  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _signal_weights(value: dict[str, float]) -> dict[str, float]:
    for name, weight in value.items():
        if not SIGNAL_NAME.fullmatch(name):
            raise ValueError("a weight is keyed by a signal name such as network or user_agent")
        if not 0 <= weight <= 10:
            raise ValueError(f"the weight of {name} is not from 0 (off) to 10")
    return value


class ZeroTrustProfile(_Section):
    """One purpose's decision: points at which it steps up and denies, what a failing signal
    imposes, and weights over `zerotrust.weights` (0 switches a signal off)."""

    step_up_at: float = Field(ge=0, le=10_000)
    deny_at: float = Field(ge=0, le=10_000)
    on_signal_error: OnSignalError
    weights: dict[str, float] = Field(default_factory=dict)

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        return _signal_weights(value)

    @model_validator(mode="after")
    def _ordered(self) -> ZeroTrustProfile:
        if self.step_up_at > self.deny_at:
            raise ValueError("step_up_at must not exceed deny_at")
        return self


def _profile(purpose: str) -> Any:
    return Field(default_factory=lambda: ZeroTrustProfile(**PROFILE_DEFAULTS[purpose]))


class ZeroTrustProfiles(_Section):
    sign_in: ZeroTrustProfile = _profile("sign_in")
    request: ZeroTrustProfile = _profile("request")
    wake: ZeroTrustProfile = _profile("wake")
    admin: ZeroTrustProfile = _profile("admin")
    grant_role: ZeroTrustProfile = _profile("grant_role")
    reveal_secret: ZeroTrustProfile = _profile("reveal_secret")

    @model_validator(mode="before")
    @classmethod
    def _over_the_defaults(cls, data: Any) -> Any:
        # `profiles: {admin: {step_up_at: 20}}` changes that one threshold, not the others.
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for purpose, defaults in PROFILE_DEFAULTS.items():
            given = data.get(purpose)
            if isinstance(given, dict):
                merged[purpose] = {**defaults, **given}
        return merged


class ZeroTrustBehaviour(_Section):
    """The behaviour and reputation signals' settings (docs/zerotrust.md, "Behaviour and
    reputation"): what a believable journey is, what habits are, how fast failures fade."""

    # Impossible travel: the fastest believable journey (Curity's 250 km/h; about 1000 where
    # users sign in on both sides of a flight), after `travel_tolerance_km` plus both places'
    # accuracy radius is taken off the distance.
    max_speed_kmh: float = Field(default=250.0, gt=0, le=100_000)
    travel_tolerance_km: float = Field(default=100.0, ge=0, le=20_000)
    # Rapid address change: this many distinct addresses (this one included) within the window.
    rapid_change_addresses: int = Field(default=4, ge=2, le=1_000)
    rapid_change_minutes: int = Field(default=60, ge=1, le=10_080)
    # Unusual hour: only once a user has this much history; hours counted in `habit_zone`.
    habit_min_sign_ins: int = Field(default=20, ge=1, le=500)
    habit_min_days: int = Field(default=30, ge=1, le=180)
    habit_zone: str = "UTC"
    # Reputation: a failed sign-in's points halve every this many minutes.
    failure_half_life_minutes: float = Field(default=60.0, gt=0, le=1_440)

    @field_validator("habit_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone name such as UTC or Europe/Paris") from None
        return value


class ZeroTrustSettings(_Section):
    """Every sign-in, request and wake weighed into allow, step-up or deny (docs/zerotrust.md).

    On by default: with no list configured only the client signals act, and on their own they
    deny nothing but an attack tool's user agent at sign-in (a headless browser is stepped up
    for admin purposes); lists and databases are the admin's choice."""

    enabled: bool = True
    # CIDRs or addresses. deny: refused whatever else; allow: never refused on points alone,
    # and not by the country, ASN or anonymiser lists (an explicit deny still wins); trusted:
    # lowers the score.
    deny_networks: list[str] = Field(default_factory=list)
    allow_networks: list[str] = Field(default_factory=list)
    trusted_networks: list[str] = Field(default_factory=list)
    # ISO 3166-1 alpha-2 codes. A non-empty allow list refuses every other known country.
    allow_countries: list[str] = Field(default_factory=list)
    deny_countries: list[str] = Field(default_factory=list)
    # Autonomous system numbers (hosting providers, say); needs asn_database.
    deny_asns: list[int] = Field(default_factory=list)
    # Points for a public address no database places in a country.
    unknown_country_score: float = Field(default=10.0, ge=0, le=100)
    # MaxMind-format databases (GeoLite2/GeoIP2 City or Country; ASN). The country works
    # without them (a bundled database).
    city_database: Path | None = None
    asn_database: Path | None = None
    # Tor exit / VPN addresses and CIDRs, one a line, # comments; read again when it changes.
    anonymiser_file: Path | None = None
    # true: an entry is refused; false: scored only.
    anonymisers_deny: bool = True
    min_browser_versions: dict[str, int] = Field(default_factory=lambda: dict(MIN_BROWSER_VERSIONS))
    # Weights for every purpose (1.0 when unnamed); a profile's own weights override them.
    weights: dict[str, float] = Field(default_factory=dict)
    profiles: ZeroTrustProfiles = Field(default_factory=ZeroTrustProfiles)
    behaviour: ZeroTrustBehaviour = Field(default_factory=ZeroTrustBehaviour)
    # Authenticated requests: a session's decision is kept this long per (session, address,
    # user agent, purpose); a change of any of them is weighed at once.
    request_cache_seconds: int = Field(default=300, ge=0, le=3_600)
    # A session seen in another country than the one it signed in from: step_up (a fresh
    # code) or revoke (signed out).
    session_country_change: Literal["step_up", "revoke"] = "step_up"

    @field_validator("deny_networks", "allow_networks", "trusted_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return ip_networks(value)

    @field_validator("allow_countries", "deny_countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        codes = [code.strip().upper() for code in value]
        for index, code in enumerate(codes):
            if code == "UK":
                raise ValueError(f"item {index}: the United Kingdom is GB in ISO 3166-1")
            if code not in COUNTRY_CODES:
                raise ValueError(
                    f"item {index} is not a two-letter country code (ISO 3166-1) such as DE or US"
                )
        return codes

    @field_validator("deny_asns")
    @classmethod
    def _asns(cls, value: list[int]) -> list[int]:
        for index, asn in enumerate(value):
            if not 1 <= asn <= 4_294_967_295:
                raise ValueError(f"item {index} is not an AS number (1 to 4294967295)")
        return value

    @field_validator("city_database", "asn_database", "anonymiser_file")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("min_browser_versions")
    @classmethod
    def _versions(cls, value: dict[str, int]) -> dict[str, int]:
        if any(version < 1 for version in value.values()):
            raise ValueError("a minimum browser version is a major version from 1")
        return value

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        return _signal_weights(value)

    @model_validator(mode="after")
    def _consistent(self) -> ZeroTrustSettings:
        both = sorted(set(self.allow_countries) & set(self.deny_countries))
        if both:
            raise ValueError(f"{', '.join(both)} on both allow_countries and deny_countries")
        if self.deny_asns and self.asn_database is None:
            raise ValueError("deny_asns needs asn_database (the bundled database has no ASNs)")
        return self
