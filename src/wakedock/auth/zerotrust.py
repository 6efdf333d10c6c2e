"""The zero-trust gate: where the engine (zerotrust/) meets a sign-in or an authenticated
request (docs/zerotrust.md).

One place owns the engine for the features: it builds the `Attempt` from what the request
carries (the spoof-proof address, the user agent and the headers of web/client_ip.py's
`client_headers`), finds the address's place, runs the engine, audits every decision that is
not a silent allow (`zero_trust_decision`: the purpose, the decision, the score and each
signal's part, with the request id shown on the refusal so an admin can find it), and keeps
the behaviour and reputation stores up to date (a success is remembered, a failure recorded).

Every method of the gate blocks (a database round trip, the first country lookup loads a
database): the login flow calls it from the worker thread it already runs on. `RequestWeigher`
is the request path's: its decision is kept per session, address, user agent and purpose, so
a request costs a dictionary lookup unless one of those changed (then one worker thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.service import Auditor
from wakedock.auth.models import UserSession
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.clock import Clock
from wakedock.config.zerotrust import ZeroTrustSettings
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import DependencyUnavailable, NotAuthenticated, PermissionDenied
from wakedock.zerotrust.base import Assessment, Attempt, Decision, Finding, Place, Purpose
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
REQUEST_REFUSED = "request refused by the access policy"
STEP_UP_WITHOUT_MFA = (
    "this sign-in needs a second factor and the account has none: sign in from a usual "
    "network and device and enrol an authenticator app, or ask an administrator"
)
FRESH_CODE = (
    "the access policy asks for a fresh code from your authenticator app: "
    "POST /api/v1/auth/mfa/step-up"
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


class FreshCodeNeeded(PermissionDenied):
    """The engine asks a session for a fresh code (403, the code MFA's own step-up uses)."""

    code = "step_up_required"


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
        self,
        attempt: Attempt,
        context: RequestContext,
        *,
        only_deny: bool = False,
        extra: tuple[Finding, ...] = (),
        signals: frozenset[str] | None = None,
    ) -> Assessment:
        """The engine's decision on `attempt` (with `extra` findings of the caller's own; with
        `signals`, those signals alone), audited unless it is an allow with no score (with
        `only_deny`, audited only when it is a deny: a first look that a second one
        completes)."""
        if not self.enabled:
            return Assessment(Decision.ALLOW, 0.0)
        assessment = _with(self._engine.assess(attempt, signals), extra)
        if only_deny:
            audited = assessment.decision is Decision.DENY
        else:
            audited = assessment.decision is not Decision.ALLOW or assessment.score != 0
        if audited:
            self._audit(attempt, assessment, context)
        return assessment

    def refuse(
        self, context: RequestContext, what: str = REFUSED, *, reference: str | None = None
    ) -> ZeroTrustRefused:
        """The refusal, naming the reference of the request whose decision was audited
        (`reference`; by default this request's own id)."""
        reference = reference or context.request_id or "none"
        return ZeroTrustRefused(f"{what} (reference {reference})", extra={"reference": reference})

    def step_up_without_mfa(
        self, context: RequestContext, *, reference: str | None = None
    ) -> StepUpNeeded:
        reference = reference or context.request_id or "none"
        return StepUpNeeded(
            f"{STEP_UP_WITHOUT_MFA} (reference {reference})", extra={"reference": reference}
        )

    def fresh_code(
        self, context: RequestContext, *, reference: str | None = None
    ) -> FreshCodeNeeded:
        reference = reference or context.request_id or "none"
        return FreshCodeNeeded(
            f"{FRESH_CODE} (reference {reference})", extra={"reference": reference}
        )

    def warm(self) -> None:
        self._places.warm()

    def place_of(self, address: str) -> Place:
        return self._places.find(address)

    def audit_event(self, event: Event, context: RequestContext) -> None:
        self._auditor.record(event, context)

    def prune(self) -> int:
        """Drop the sign-in history older than its retention (users who stopped signing in;
        each user's rows are bounded on write already); how many rows went."""
        return self._history.prune(self._clock.now())

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


def _with(assessment: Assessment, extra: tuple[Finding, ...]) -> Assessment:
    """`assessment` with more findings: their scores added, their decisive decisions raising
    the decision (never lowering it)."""
    if not extra:
        return assessment
    decision = assessment.decision
    for finding in extra:
        if finding.decisive is not None and finding.decisive.rank > decision.rank:
            decision = finding.decisive
    score = round(assessment.score + sum(f.score for f in extra), 3)
    return Assessment(decision, score, assessment.findings + extra)


_SIGN_IN_MARGIN = timedelta(seconds=5)


@dataclass(frozen=True)
class _Verdict:
    assessment: Assessment
    # Since when this decision holds for (session, address, user agent, purpose): a code
    # proven since answers a step-up. The session's own address and user agent hold since
    # its sign-in (whose code, with MFA, answers it).
    since: datetime
    expires: float
    # The request id under which the decision was weighed (and audited): what a refusal
    # names for as long as the decision is kept.
    reference: str | None = None


@dataclass(frozen=True)
class _Origin:
    ip: str
    user_agent: str
    created_at: datetime


class RequestWeigher:
    """Weighs authenticated requests (docs/zerotrust.md, "On requests"): once per session,
    address, user agent and purpose in `cache_seconds`, then enforced on every request.

    `deny` refuses (403); `step_up` asks for a code proven since the risk appeared (the
    sign-in's own, from the session's own address and user agent), or refuses an account
    without MFA;
    a session seen in another country than the one it signed in from is stepped up, or
    revoked (`country_change`)."""

    def __init__(
        self,
        gate: ZeroTrustGate,
        sessions: SessionStore,
        factory: sessionmaker[Session],
        clock: Clock,
        *,
        cache_seconds: int = 300,
        country_change: Literal["step_up", "revoke"] = "step_up",
        cache_size: int = 10_000,
    ) -> None:
        self._gate = gate
        self._sessions = sessions
        self._factory = factory
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._country_change = country_change
        self._cache_size = cache_size
        self._verdicts: OrderedDict[tuple[str, str, str, Purpose], _Verdict] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._gate.enabled

    def warm(self) -> None:
        """Load the place databases now (blocking, ~0.6 s once per process); a failure is
        logged: the first request that needs a place then meets it."""
        try:
            self._gate.warm()
        except Exception:
            log.exception("could not load the zero-trust place databases ahead of use")

    def prune(self) -> int:
        """The gate's `prune` (blocking: one DELETE)."""
        return self._gate.prune()

    def weigh(
        self,
        principal: Principal,
        context: RequestContext,
        headers: Mapping[str, str],
        purpose: Purpose,
        *,
        step_up: bool = True,
    ) -> None:
        """Weigh the request (blocking: run it on a worker thread) and enforce the decision
        (without `step_up`, only a deny: the routes that answer a step-up)."""
        key = self._key(principal, context, purpose)
        verdict = self._get(key)
        if verdict is None:
            verdict = self._weighed(key, principal, context, headers, purpose)
        self._enforce(verdict, principal, context, step_up=step_up)

    def enforce_cached(
        self,
        principal: Principal,
        context: RequestContext,
        purpose: Purpose,
        *,
        step_up: bool = True,
    ) -> bool:
        """Enforce the decision kept for this request, without blocking; False when there is
        none (then `weigh` it on a worker thread)."""
        verdict = self._get(self._key(principal, context, purpose))
        if verdict is None:
            return False
        self._enforce(verdict, principal, context, step_up=step_up)
        return True

    @staticmethod
    def _key(
        principal: Principal, context: RequestContext, purpose: Purpose
    ) -> tuple[str, str, str, Purpose]:
        return (principal.session_id, context.ip or "unknown", context.user_agent or "", purpose)

    def _get(self, key: tuple[str, str, str, Purpose]) -> _Verdict | None:
        with self._lock:
            verdict = self._verdicts.get(key)
            if verdict is None or verdict.expires < time.monotonic():
                return None
            self._verdicts.move_to_end(key)
            return verdict

    def _weighed(
        self,
        key: tuple[str, str, str, Purpose],
        principal: Principal,
        context: RequestContext,
        headers: Mapping[str, str],
        purpose: Purpose,
    ) -> _Verdict:
        attempt = self._gate.attempt(
            purpose, context, headers, username=principal.username, user_id=principal.user_id
        )
        origin = self._origin(principal)
        moved = self._moved(origin, attempt)
        if moved is not None and self._country_change == "revoke":
            self._revoke(principal, context, moved)
        extra = () if moved is None else (moved,)
        assessment = self._gate.weigh(attempt, context, extra=extra)
        now = self._clock.now()
        with self._lock:
            previous = self._verdicts.get(key)
            if origin is not None and (origin.ip, origin.user_agent) == key[1:3]:
                # Where and with what the session signed in: its sign-in's code proved this
                # (proven a moment before the session row was written).
                since = origin.created_at - _SIGN_IN_MARGIN
            elif previous is not None and previous.assessment.decision is assessment.decision:
                since = previous.since
            else:
                since = now
            expires = time.monotonic() + self._cache_seconds
            verdict = _Verdict(assessment, since, expires, context.request_id)
            self._verdicts[key] = verdict
            self._verdicts.move_to_end(key)
            while len(self._verdicts) > self._cache_size:
                self._verdicts.popitem(last=False)
        return verdict

    def _origin(self, principal: Principal) -> _Origin | None:
        """Where, with what and when the session signed in."""
        with self._factory() as db:
            row = db.execute(
                select(UserSession.ip, UserSession.user_agent, UserSession.created_at).where(
                    UserSession.id == principal.session_id
                )
            ).first()
        return None if row is None else _Origin(row[0], row[1] or "", row[2])

    def _moved(self, origin: _Origin | None, attempt: Attempt) -> Finding | None:
        """A finding when the session signed in from another (known) country than this one."""
        country = attempt.place.country
        if country is None or origin is None:
            return None
        before = self._gate.place_of(origin.ip).country
        if before is None or before == country:
            return None
        return Finding(
            "session_country",
            0.0,
            f"the session signed in from {before} and is now used from {country}",
            decisive=Decision.STEP_UP if self._country_change == "step_up" else Decision.DENY,
        )

    def _revoke(self, principal: Principal, context: RequestContext, moved: Finding) -> None:
        with transaction(self._factory) as db:
            self._sessions.revoke(db, principal.session_id, reason="zero_trust_country_change")
        revoked = Event(
            EventType.SESSION_REVOKE,
            Outcome.SUCCESS,
            target=principal.username,
            severity=Severity.MEDIUM,
            details={"session": principal.session_id, "reason": moved.reason},
        )
        self._gate.audit_event(revoked, context)
        raise NotAuthenticated("Session revoked: it moved to another country")

    def _enforce(
        self, verdict: _Verdict, principal: Principal, context: RequestContext, *, step_up: bool
    ) -> None:
        decision = verdict.assessment.decision
        reference = verdict.reference
        if decision is Decision.DENY:
            raise self._gate.refuse(context, REQUEST_REFUSED, reference=reference)
        if decision is Decision.STEP_UP and step_up:
            proven = principal.mfa_at
            if proven is not None and proven >= verdict.since:
                return
            if not principal.mfa_enabled:
                raise self._gate.step_up_without_mfa(context, reference=reference)
            raise self._gate.fresh_code(context, reference=reference)
