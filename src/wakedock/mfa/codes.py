"""Checking and spending second-factor codes: TOTP steps and backup codes, atomically."""

from __future__ import annotations

import logging
from enum import Enum

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from wakedock.auth.models import User
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.sessions import changed_rows
from wakedock.clock import Clock
from wakedock.mfa import backup_codes, totp
from wakedock.mfa.crypto import SecretBox
from wakedock.mfa.models import BackupCode

log = logging.getLogger("wakedock.mfa")


class CodeCheck(Enum):
    TOTP = "totp"
    BACKUP = "backup_code"
    REPLAY = "replayed_code"
    WRONG = "wrong_code"


def seal_context(user_id: int, purpose: str) -> str:
    """What a sealed secret is bound to: copied to another row or purpose, it does not open."""
    return f"user:{user_id}:{purpose}"


class CodeBook:
    """Accepts each valid code once, across processes (the database arbitrates)."""

    def __init__(self, clock: Clock, box: SecretBox, hasher: PasswordHasher) -> None:
        self._clock = clock
        self._box = box
        self._hasher = hasher

    def accept(self, db: Session, user: User, code: str, *, backup: bool = True) -> CodeCheck:
        """Check a TOTP code (or, if `backup`, a backup code) and spend it atomically.

        Actions that demand a current TOTP code pass backup=False, so that a backup code
        offered there is neither accepted nor burnt.
        """
        now = self._clock.now()
        if user.mfa_enabled and user.mfa_secret is not None:
            try:
                secret = self._box.open(user.mfa_secret, seal_context(user.id, "totp"))
            except ValueError:
                # Tampered row or wrong key: refuse (and count the attempt), never a 500.
                log.error("the MFA secret of user %s does not open", user.id)
                return CodeCheck.WRONG
            step = totp.matching_step(secret, code, now)
            if step is not None:
                spent = changed_rows(
                    db.execute(
                        update(User)
                        .where(
                            User.id == user.id,
                            or_(User.mfa_last_step.is_(None), User.mfa_last_step < step),
                        )
                        .values(mfa_last_step=step)
                        .execution_options(synchronize_session=False)
                    )
                )
                return CodeCheck.TOTP if spent == 1 else CodeCheck.REPLAY
            normal = backup_codes.normalise(code) if backup else None
            if normal is not None:
                return self._spend_backup_code(db, user, normal)
        return CodeCheck.WRONG

    def _spend_backup_code(self, db: Session, user: User, code: str) -> CodeCheck:
        stored = db.execute(select(BackupCode).where(BackupCode.user_id == user.id)).scalars()
        for row in stored:
            if not self._hasher.verify(row.code_hash, code):
                continue
            if row.used_at is not None:
                return CodeCheck.REPLAY
            spent = changed_rows(
                db.execute(
                    update(BackupCode)
                    .where(BackupCode.id == row.id, BackupCode.used_at.is_(None))
                    .values(used_at=self._clock.now())
                    .execution_options(synchronize_session=False)
                )
            )
            return CodeCheck.BACKUP if spent == 1 else CodeCheck.REPLAY
        return CodeCheck.WRONG

    def new_backup_codes(self, db: Session, user: User) -> list[str]:
        """Replace the user's backup codes with ten new ones (returned once, stored hashed)."""
        db.execute(delete(BackupCode).where(BackupCode.user_id == user.id))
        codes = backup_codes.generate()
        now = self._clock.now()
        for code in codes:
            db.add(BackupCode(user_id=user.id, code_hash=self._hasher.hash(code), created_at=now))
        return codes
