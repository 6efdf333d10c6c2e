"""Password hashing with argon2id, and verification that costs the same for unknown users."""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP Password Storage Cheat Sheet: argon2id with at least 19 MiB, 2 iterations, 1 lane.
OWASP_MIN_MEMORY_KIB = 19 * 1024
OWASP_MIN_TIME_COST = 2


class PasswordHasher:
    """argon2id hashing. The parameters never go below OWASP's minimum."""

    def __init__(self, memory_kib: int = 65536, time_cost: int = 3, parallelism: int = 1) -> None:
        if memory_kib < OWASP_MIN_MEMORY_KIB or time_cost < OWASP_MIN_TIME_COST:
            raise ValueError("argon2 parameters below the OWASP minimum")
        self._argon2 = _Argon2(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified against when the username is unknown, so that both cases cost the same.
        self._dummy_hash = self._argon2.hash("wakedock-timing-equaliser")

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if `password` matches; with no stored hash, burns the same time and says no."""
        try:
            return self._argon2.verify(stored_hash or self._dummy_hash, password) and (
                stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._argon2.check_needs_rehash(stored_hash)
