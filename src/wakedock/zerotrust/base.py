"""The engine's vocabulary: what is weighed (`Attempt`), what a signal finds (`Finding`), the
port every signal implements (`Signal`) and the outcome (`Assessment`).

A signal is a small class with one question ("is this address on a deny list?", "could this
user have travelled here since the last sign-in?"). It returns `None` when it has nothing to
say, or a `Finding`: a score (positive raises the risk, negative lowers it, e.g. a trusted
network) and a reason a security team can read in the audit trail. `decisive` findings decide
on their own (a deny-listed network is denied whatever the other signals say). The engine adds
the weighted scores and compares the sum with the thresholds of the attempt's profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Purpose(StrEnum):
    """What the attempt is for: each purpose has its own profile (weights and thresholds)."""

    SIGN_IN = "sign_in"
    REQUEST = "request"
    ADMIN = "admin"
    GRANT_ROLE = "grant_role"
    REVEAL_SECRET = "reveal_secret"  # noqa: S105 (a purpose name, not a password)
    WAKE = "wake"


class Decision(StrEnum):
    """Ordered from the most to the least permissive; `max()` of two is the stricter."""

    ALLOW = "allow"
    STEP_UP = "step_up"
    DENY = "deny"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Decision.ALLOW: 0, Decision.STEP_UP: 1, Decision.DENY: 2}


@dataclass(frozen=True)
class Place:
    """Where an address is, as far as the configured databases know (all optional)."""

    country: str | None = None
    asn: int | None = None
    organisation: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    # The database's own uncertainty for the coordinates, in km (MaxMind's accuracy radius).
    accuracy_km: float | None = None


@dataclass(frozen=True)
class Attempt:
    """One thing to weigh. The address is the spoof-proof client address (`web/client_ip.py`:
    `X-Forwarded-For` only from trusted proxies); header names are lower case."""

    purpose: Purpose
    address: str
    at: datetime
    user_agent: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    username: str | None = None
    user_id: int | None = None
    place: Place = field(default_factory=Place)


@dataclass(frozen=True)
class Finding:
    """What one signal found: a score (weighted by the engine), a reason for people, and
    `decisive` when this finding alone sets the decision (allow lists and deny lists)."""

    signal: str
    score: float
    reason: str
    decisive: Decision | None = None


class Signal(Protocol):
    """One named question about an attempt. `weigh` may block (a database read): the engine is
    called from a worker thread, never on the event loop."""

    name: str

    def weigh(self, attempt: Attempt) -> Finding | None:
        """A finding, or None when this signal has nothing to say about the attempt."""
        ...


@dataclass(frozen=True)
class Assessment:
    """The engine's answer: the decision, the weighted total and every finding behind it."""

    decision: Decision
    score: float
    findings: tuple[Finding, ...] = ()

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{f.signal}: {f.reason}" for f in self.findings)
