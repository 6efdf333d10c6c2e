"""What the wake coordinator answers to a visit: `Ready | Waking | Refused`, rendered by the
proxy handler (the page, the status code, the redirect are its business, not the decision's)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from wakedock.errors import DependencyUnavailable, WakeDockError
from wakedock.runtime.base import Endpoint


class WakeFailed(WakeDockError):
    """The service could not be started or never became ready; the next request may retry."""

    status_code = 502
    code = "wake_failed"

    def __init__(self, detail: str, *, timed_out: bool = False) -> None:
        super().__init__(detail)
        self.timed_out = timed_out


class TooManyAwake(DependencyUnavailable):
    code = "too_many_awake"


@dataclass(frozen=True)
class Ready:
    """The service is awake: forward to `endpoint`."""

    endpoint: Endpoint


@dataclass(frozen=True)
class Waking:
    """A wake is under way (this visit's or an earlier one's, shared: single flight)."""

    task: asyncio.Task[Endpoint] = field(repr=False)
    # The wake enforces the service's wake timeout itself; the margin lets its verdict arrive
    # before a waiting visitor gives up.
    patience_s: float

    async def ready(self) -> Endpoint:
        """The endpoint once awake. WakeFailed when the wake failed (or timed out itself),
        TimeoutError when no verdict came within `patience_s`."""
        return await asyncio.wait_for(asyncio.shield(self.task), timeout=self.patience_s)


class Refusal(StrEnum):
    """Why a visit neither reaches nor wakes the service."""

    SIGN_IN = "sign_in"  # no usable session
    FORBIDDEN = "forbidden"  # signed in, the access policy does not admit the role
    TOO_MANY_WAKES = "too_many_wakes"  # this address woke services too often
    BUSY = "busy"  # too many services awake, or the rate limiter unreachable
    # The zero-trust engine (proxy/trust.py): refused; a fresh code asked of a session; a
    # fresh code asked of an account without a second factor.
    DENIED = "denied"
    STEP_UP = "step_up"
    STEP_UP_WITHOUT_MFA = "step_up_without_mfa"


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    # For BUSY: why, in words a visitor may read.
    detail: str = ""
    # For TOO_MANY_WAKES: seconds until the address may wake a service again.
    retry_after: int | None = None
    # For the zero-trust refusals: the request id under which the decision was audited, shown
    # so that an admin can find the reasons (never shown to the visitor).
    reference: str | None = None


WakeDecision = Ready | Waking | Refused
