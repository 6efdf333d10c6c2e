"""Zero trust on service hosts (docs/zerotrust.md, "On service hosts").

- A protected service: the visitor's session is weighed as every authenticated request is
  (auth/zerotrust.py, `RequestWeigher`), by the `wake` profile when the visit would wake the
  service (starts or joins a wake) and by `request` once it is awake. A deny refuses; a step-up
  asks for a fresh code, which the visitor gives on the admin host's hand-off page.
- A public service whose spec opts in (`access.network_filter: true`): the address alone is
  weighed by the network signals (deny and allow lists, countries, AS numbers, anonymisers)
  with the `wake` profile. Only a deny refuses: nobody is signed in to answer a step-up.

Either decision is kept per (session, address, user agent, purpose), or per address, for
`zerotrust.request_cache_seconds`: a visit costs a dictionary lookup, and a worker thread only
when one of those changed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from wakedock.auth.sessions import Principal
from wakedock.auth.zerotrust import (
    FreshCodeNeeded,
    RequestWeigher,
    StepUpNeeded,
    ZeroTrustGate,
    ZeroTrustRefused,
)
from wakedock.context import RequestContext
from wakedock.errors import NotAuthenticated
from wakedock.proxy.decision import Refusal, Refused
from wakedock.services.snapshots import ServiceView
from wakedock.zerotrust.base import Decision, Purpose

# What the network filter of a public service weighs: where the address is, never who or with
# what client (a public service's visitors are often scripts).
NETWORK_SIGNALS = frozenset({"network", "place", "anonymiser"})


@dataclass(frozen=True)
class _AddressVerdict:
    denied: bool
    reference: str | None
    expires: float


class ServiceTrust:
    """The zero-trust decision on one visit of a service host (see the module's docstring)."""

    def __init__(
        self,
        weigher: RequestWeigher,
        gate: ZeroTrustGate,
        *,
        cache_seconds: int = 300,
        cache_size: int = 10_000,
    ) -> None:
        self._weigher = weigher
        self._gate = gate
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._addresses: OrderedDict[str, _AddressVerdict] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._gate.enabled

    async def judge(
        self,
        view: ServiceView,
        principal: Principal | None,
        context: RequestContext,
        headers: Callable[[], Mapping[str, str]],
        *,
        waking: bool,
    ) -> Refused | None:
        """None when the visit may go on, else why not. Without suspending when the decision
        is kept; `headers` is read only when the visit must be weighed."""
        if not self._gate.enabled:
            return None
        access = view.spec.access
        if access.policy == "public":
            if not access.network_filter:
                return None
            kept = self._kept_address(context)
            if kept is None:
                kept = await run_in_threadpool(self._weigh_address, context, headers())
            if kept.denied:
                return Refused(Refusal.DENIED, reference=kept.reference or context.request_id)
            return None
        if principal is None:
            return None  # the access decision sends the visitor to sign in first
        purpose = Purpose.WAKE if waking else Purpose.REQUEST
        try:
            if not self._weigher.enforce_cached(principal, context, purpose):
                await run_in_threadpool(self._weigher.weigh, principal, context, headers(), purpose)
        except ZeroTrustRefused as exc:
            return Refused(Refusal.DENIED, reference=_reference(exc.extra))
        except FreshCodeNeeded as exc:
            return Refused(Refusal.STEP_UP, reference=_reference(exc.extra))
        except StepUpNeeded as exc:
            return Refused(Refusal.STEP_UP_WITHOUT_MFA, reference=_reference(exc.extra))
        except NotAuthenticated:  # revoked: the session moved country (`revoke`)
            return Refused(Refusal.SIGN_IN)
        return None

    def _kept_address(self, context: RequestContext) -> _AddressVerdict | None:
        address = context.ip or "unknown"
        with self._lock:
            kept = self._addresses.get(address)
            if kept is None or kept.expires < time.monotonic():
                return None
            self._addresses.move_to_end(address)
            return kept

    def _weigh_address(
        self, context: RequestContext, headers: Mapping[str, str]
    ) -> _AddressVerdict:
        attempt = self._gate.attempt(Purpose.WAKE, context, headers)
        assessment = self._gate.weigh(attempt, context, only_deny=True, signals=NETWORK_SIGNALS)
        verdict = _AddressVerdict(
            assessment.decision is Decision.DENY,
            context.request_id,
            time.monotonic() + self._cache_seconds,
        )
        with self._lock:
            self._addresses[attempt.address] = verdict
            self._addresses.move_to_end(attempt.address)
            while len(self._addresses) > self._cache_size:
                self._addresses.popitem(last=False)
        return verdict


def _reference(extra: Mapping[str, object] | None) -> str | None:
    found = (extra or {}).get("reference")
    return found if isinstance(found, str) else None
