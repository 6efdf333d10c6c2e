"""The tests' password hasher: argon2id at a cost far below production's floor.

Tests create and sign in thousands of accounts and hash ten backup codes per MFA enrolment;
at OWASP's minimum (19 MiB, 2 passes: about 40 ms a hash here) that was a large share of the
suite's time. No test measures the hash's cost: the floor production enforces is tested in
tests/auth/test_password_policy.py, and `wakedock serve` in the subprocess tests keeps it.
"""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2 import Type

from wakedock.auth.passwords import PasswordHasher


class QuickHasher(PasswordHasher):
    """argon2id with 1 MiB and one pass (under a millisecond): what the in-process tests use."""

    def __init__(self) -> None:  # the floor's check is production's, not the tests'
        self._argon2 = _Argon2(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
        self._dummy_hash = self._argon2.hash("wakedock-timing-equaliser")
