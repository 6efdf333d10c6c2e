"""The zero-trust gate: where the engine (zerotrust/) meets a sign-in (docs/zerotrust.md).

One place owns the engine for the features: it builds the `Attempt` from what the request
carries (the spoof-proof address, the user agent and the headers of web/client_ip.py's
`client_headers`), finds the address's place, runs the engine, audits every decision that is
not a silent allow (`zero_trust_decision`: the purpose, the decision, the score and each
signal's part, with the request id shown on the refusal so an admin can find it), and keeps
the behaviour and reputation stores up to date (a success is remembered, a failure recorded).

Every method blocks (a database round trip, the first country lookup loads a database): the
login flow calls it from the worker thread it already runs on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.service import Auditor
from wakedock.clock import Clock
from wakedock.config.zerotrust import ZeroTrustSettings
from wakedock.context import RequestContext
from wakedock.errors import DependencyUnavailable, PermissionDenied
from wakedock.zerotrust.base import Assessment, Attempt, Decision, Purpose
from wakedock.zerotrust.build import (
    place_finder_from,
    profiles_from,
    stateful_signals,
    stateless_signals,
)
from wakedock.zerotrust.engine import ZeroTrustEngine
from wakedock.zerotrust.history import SignInFailures, SignInHistory
from wakedock.zerotrust.places import PlaceFinder
from wakedock.zerotrust.signals.client import browser_of

log = logging.getLogger("wakedock.zerotrust")

# What a refusal says: never which signal counted (that would teach an attacker what to change),
# always the reference an admin finds the reasons by.
REFUSED = "sign-in refused by the access policy"
STEP_UP_WITHOUT_MFA = (
    "this sign-in needs a second factor and the account has none: sign in from a usual "
    "network and device and enrol an authenticator app, or ask an administrator"
)
_SEVERITY = {Decision.ALLOW: Severity.INFO, Decision.STEP_UP: Severity.LOW,
             Decision.DENY: Severity.MEDIUM}  # fmt: skip
_OUTCOME = {Decision.ALLOW: Outcome.SUCCESS, Decision.STEP_UP: Outcome.FAILURE,
            Decision.DENY: Outcome.DENIED}  # fmt: skip


class ZeroTrustRefused(PermissionDenied):
    """The engine denied the attempt (403); the reference is the request id."""

    code = "zero_trust_denied"


class StepUpNeeded(PermissionDenied):
    """The engine asks for a fresh second factor and the account has none (403)."""

    code = "zero_trust_step_up"


class ZeroTrustGate:
    """The engine as the features use it. `enabled=False` (zerotrust.enabled: false) allows
    everything silently and remembers nothing."""

    def __init__(
        self,
        engine: ZeroTrustEngine,
        places: PlaceFinder,
        history: SignInHistory,
        failures: SignInFailures,
        auditor: Auditor,
        clock: Clock,
        *,
        enabled: bool = True,
    ) -> None:
        self._engine = engine
        self._places = places
        self._history = history
        self._failures = failures
        self._auditor = auditor
        self._clock = clock
        self.enabled = enabled

    def attempt(
        self,
        purpose: Purpose,
        context: RequestContext,
        headers: Mapping[str, str],
        *,
        username: str | None = None,
        user_id: int | None = None,
    ) -> Attempt:
        address = context.ip or "unknown"
        return Attempt(
            purpose=purpose,
            address=address,
            at=self._clock.now(),
            user_agent=context.user_agent or "",
            headers=dict(headers),
            username=username,
            user_id=user_id,
            place=self._places.find(address),
        )

    def weigh(
        self, attempt: Attempt, context: RequestContext, *, only_deny: bool = False
    ) -> Assessment:
        """The engine's decision on `attempt`, audited unless it is an allow with no score
        (with `only_deny`, audited only when it is a deny: a first look that a second one
        completes)."""
        if not self.enabled:
            return Assessment(Decision.ALLOW, 0.0)
        assessment = self._engine.assess(attempt)
        if only_deny:
            audited = assessment.decision is Decision.DENY
        else:
            audited = assessment.decision is not Decision.ALLOW or assessment.score != 0
        if audited:
            self._audit(attempt, assessment, context)
        return assessment

    def refuse(self, context: RequestContext) -> ZeroTrustRefused:
        reference = context.request_id or "none"
        return ZeroTrustRefused(
            f"{REFUSED} (reference {reference})", extra={"reference": reference}
        )

    def step_up_without_mfa(self, context: RequestContext) -> StepUpNeeded:
        reference = context.request_id or "none"
        return StepUpNeeded(
            f"{STEP_UP_WITHOUT_MFA} (reference {reference})", extra={"reference": reference}
        )

    def remember(self, attempt: Attempt) -> None:
        """A successful sign-in, for the behaviour signals. A failure to write it is logged,
        never a reason to refuse the person who just proved who they are."""
        if not self.enabled:
            return
        try:
            family = browser_of(attempt.user_agent)[0] if attempt.user_agent else None
            self._history.remember(attempt, user_agent_family=family)
        except (DependencyUnavailable, SQLAlchemyError):
            log.exception("could not remember a sign-in for the zero-trust history")

    def record_failure(self, attempt: Attempt) -> None:
        """A failed sign-in, for the reputation of its address and username."""
        if not self.enabled or attempt.username is None:
            return
        try:
            self._failures.record_failure(attempt.address, attempt.username, attempt.at)
        except (DependencyUnavailable, SQLAlchemyError):
            log.exception("could not record a failed sign-in for the zero-trust reputation")

    def _audit(self, attempt: Attempt, assessment: Assessment, context: RequestContext) -> None:
        details: dict[str, Any] = {
            "purpose": attempt.purpose.value,
            "decision": assessment.decision.value,
            "score": assessment.score,
            "signals": {f.signal: round(f.score, 3) for f in assessment.findings},
            "reasons": list(assessment.reasons),
        }
        if attempt.place.country:
            details["country"] = attempt.place.country
        event = Event(
            EventType.ZERO_TRUST_DECISION,
            _OUTCOME[assessment.decision],
            target=attempt.username,
            severity=_SEVERITY[assessment.decision],
            details=details,
        )
        self._auditor.record(event, context)


def zero_trust_gate(
    settings: ZeroTrustSettings,
    factory: sessionmaker[Session],
    auditor: Auditor,
    clock: Clock,
) -> ZeroTrustGate:
    """The gate as the `zerotrust` section describes it, its stores on the database."""
    history, failures = SignInHistory(factory), SignInFailures(factory)
    signals = [
        *stateless_signals(settings, clock),
        *stateful_signals(settings, history, failures),
    ]
    engine = ZeroTrustEngine(signals, profiles_from(settings))
    return ZeroTrustGate(
        engine,
        place_finder_from(settings),
        history,
        failures,
        auditor,
        clock,
        enabled=settings.enabled,
    )
