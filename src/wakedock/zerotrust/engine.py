"""The engine: every signal weighs the attempt, the profile of its purpose turns the weighted
findings into `allow`, `step_up` or `deny` (docs/zerotrust.md, "The decision").

The rules, in order:
1. A decisive `deny` (a deny-listed network, country, ASN or anonymiser) denies, whatever else.
2. The weighted sum is compared with the profile's thresholds: `deny_at`, then `step_up_at`.
3. A decisive `step_up` (a failing signal, see below) raises the decision to at least step-up.
4. A decisive `allow` (an allow-listed network) lowers a score's `deny` to `step_up`: an
   address the admin vouches for is never refused on points alone, but it is not a free pass
   either (zero trust): a fresh TOTP code is still asked when the points say so. Rule 1 wins
   over it: an explicit deny list is an explicit decision.

A signal that raises never crashes the caller: it becomes a finding of its own, named after the
signal, with the profile's `on_signal_error` decision as a decisive one (see `Profile`). The
one exception is the database being unreachable: that is raised as it is, so the request fails
as every other does during an outage (503, logged once), not once per signal with a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import DBAPIError

from wakedock.errors import DependencyUnavailable
from wakedock.zerotrust.base import Assessment, Attempt, Decision, Finding, Purpose, Signal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """How one purpose is decided. A signal's weight defaults to 1.0; 0 switches it off for
    this purpose (its decisive findings included).

    `on_signal_error` is the decision a failing signal imposes at least: `allow` is fail-open
    (the other signals still decide), `step_up` is a middle way (a person with MFA proves
    themselves, a broken signal cannot lock everyone out), `deny` is fail-closed. The
    defaults per purpose, and why, are in config/zerotrust.py (`PROFILE_DEFAULTS`).
    """

    step_up_at: float
    deny_at: float
    weights: Mapping[str, float] = field(default_factory=dict)
    on_signal_error: Decision = Decision.STEP_UP

    def __post_init__(self) -> None:
        if not self.step_up_at <= self.deny_at:
            raise ValueError("step_up_at must not exceed deny_at")

    def weight(self, signal: str) -> float:
        return self.weights.get(signal, 1.0)


class ZeroTrustEngine:
    """Runs the signals on an attempt and decides. Blocking (a signal may read the database or
    a file): call it from a worker thread."""

    def __init__(self, signals: Iterable[Signal], profiles: Mapping[Purpose, Profile]) -> None:
        self._signals = tuple(signals)
        names = [signal.name for signal in self._signals]
        if len(set(names)) != len(names):
            raise ValueError(f"two signals share a name: {sorted(names)}")
        missing = [purpose.value for purpose in Purpose if purpose not in profiles]
        if missing:
            raise ValueError(f"no profile for {', '.join(missing)}")
        for purpose, profile in profiles.items():
            unknown = sorted(set(profile.weights) - set(names))
            if unknown:
                raise ValueError(
                    f"profile {purpose.value} weighs {', '.join(unknown)}, which no signal is "
                    f"named; the signals are {', '.join(names) or 'none'}"
                )
        self._profiles = dict(profiles)

    @property
    def signal_names(self) -> tuple[str, ...]:
        return tuple(signal.name for signal in self._signals)

    def assess(self, attempt: Attempt, only: frozenset[str] | None = None) -> Assessment:
        """The decision on the attempt, its weighted score and the findings that counted
        (each with its weighted score); with `only`, the signals so named alone."""
        profile = self._profiles[attempt.purpose]
        counted: list[Finding] = []
        for signal in self._signals:
            weight = profile.weight(signal.name)
            if weight == 0 or (only is not None and signal.name not in only):
                continue
            finding = self._weigh(signal, attempt, profile)
            if finding is not None:
                counted.append(replace(finding, score=finding.score * weight))
        total = round(sum(finding.score for finding in counted), 3)
        return Assessment(_decide(profile, total, counted), total, tuple(counted))

    @staticmethod
    def _weigh(signal: Signal, attempt: Attempt, profile: Profile) -> Finding | None:
        try:
            return signal.weigh(attempt)
        except (DBAPIError, DependencyUnavailable):
            raise  # the database is down: an outage, answered as such by the caller
        except Exception as exc:  # any other failure of a signal is a finding of its own
            log.exception("zero-trust signal %s failed", signal.name)
            decisive = (
                None if profile.on_signal_error is Decision.ALLOW else profile.on_signal_error
            )
            return Finding(
                signal.name,
                0.0,
                f"the signal failed ({type(exc).__name__}); counted as {profile.on_signal_error}",
                decisive=decisive,
            )


def _decide(profile: Profile, total: float, findings: list[Finding]) -> Decision:
    decisive = {finding.decisive for finding in findings if finding.decisive is not None}
    if Decision.DENY in decisive:
        return Decision.DENY
    if total >= profile.deny_at:
        by_score = Decision.DENY
    elif total >= profile.step_up_at:
        by_score = Decision.STEP_UP
    else:
        by_score = Decision.ALLOW
    if Decision.STEP_UP in decisive and by_score is Decision.ALLOW:
        by_score = Decision.STEP_UP
    if Decision.ALLOW in decisive and by_score is Decision.DENY:
        return Decision.STEP_UP
    return by_score
