"""Failure counters for login and other guessable secrets, on the `limits` library.

Counted on failures, checked before verifying. Storage is in-process by default, or Redis
(shared by every WakeDock replica, surviving restarts). If the store cannot be reached the
check fails closed: DependencyUnavailable (HTTP 503), never a silent pass.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from wakedock.errors import DependencyUnavailable, TooManyAttempts

_STRIPES = 256
# The audited reason of an attempt refused because the store cannot be reached.
STORE_DOWN = "rate-limit store unavailable"


class AttemptLimiter:
    """Named failure budgets (e.g. 'login:user' -> '5/15 minutes') over one storage."""

    def __init__(self, storage_url: str, budgets: dict[str, str]) -> None:
        options: dict[str, Any] = {}
        if storage_url.startswith(("redis", "rediss")):
            options = {"socket_timeout": 2, "socket_connect_timeout": 2}
        self._storage = storage_from_string(storage_url, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._budgets: dict[str, RateLimitItem] = {n: parse(v) for n, v in budgets.items()}
        # Serialises check-verify-record per key within this process, so that concurrent
        # guesses cannot all pass the check before the first failure is counted.
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    @staticmethod
    def _key(value: str) -> str:
        # Hashed: usernames and IPs never become storage keys verbatim.
        return hashlib.sha256(value.encode()).hexdigest()[:32]

    def check(self, budget: str, value: str) -> None:
        """Raise TooManyAttempts if `value` has no failures left in `budget`."""
        item = self._budgets[budget]
        key = self._key(value)
        try:
            if self._limiter.test(item, budget, key):
                return
            reset_at, _remaining = self._limiter.get_window_stats(item, budget, key)
        except Exception as exc:
            raise DependencyUnavailable("Rate-limit store unavailable, try again later") from exc
        raise TooManyAttempts(retry_after=math.ceil(reset_at - time.time()))

    def check_all(self, checks: Iterable[tuple[str, str]], on_limited: Callable[[], None]) -> None:
        """Check several (budget, value) pairs; call `on_limited` (e.g. audit) before a 429."""
        try:
            for budget, value in checks:
                self.check(budget, value)
        except TooManyAttempts:
            on_limited()
            raise

    def record_failure(self, budget: str, value: str) -> None:
        try:
            self._limiter.hit(self._budgets[budget], budget, self._key(value))
        except Exception as exc:
            raise DependencyUnavailable("Rate-limit store unavailable, try again later") from exc

    def reset(self, budget: str, value: str) -> None:
        try:
            self._limiter.clear(self._budgets[budget], budget, self._key(value))
        except Exception as exc:
            raise DependencyUnavailable("Rate-limit store unavailable, try again later") from exc

    def healthy(self) -> bool:
        try:
            return bool(self._storage.check())
        except Exception:  # noqa: BLE001
            return False

    @contextmanager
    def serialised(self, *values: str) -> Iterator[None]:
        """Hold the per-key locks of `values` (in a fixed order: no deadlock)."""
        indexes = sorted({int(self._key(v)[:8], 16) % _STRIPES for v in values})
        locks = [self._stripes[i] for i in indexes]
        for lock in locks:
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(locks):
                lock.release()
