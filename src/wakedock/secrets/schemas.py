"""Request and response bodies of /api/v1/secrets."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wakedock.secrets.base import SEGMENT
from wakedock.web.params import MAX_BIGINT

MAX_VALUE = 64 * 1024


class SecretWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Every key of the new version (keys left out are not in it).
    values: dict[str, str] = Field(min_length=1, max_length=100)
    # Check-and-set: write only if the current version is still this one (0: must not exist).
    cas: int | None = Field(default=None, ge=0, le=MAX_BIGINT)

    @field_validator("values")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not SEGMENT.fullmatch(key) or key in (".", ".."):
                raise ValueError("keys are letters, digits, _ . - only")
            if len(item) > MAX_VALUE or "\x00" in item:
                raise ValueError(f"values are at most {MAX_VALUE} characters, without NUL")
        return value


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    live: bool  # false once deleted or destroyed


class SecretOut(BaseModel):
    path: str
    children: list[str]
    keys: list[str] | None = None
    version: int | None = None
    versions: list[VersionOut] | None = None
    # Only with ?reveal=true, for a caller with secrets:reveal and a fresh MFA proof.
    values: dict[str, str] | None = None


class WrittenOut(BaseModel):
    path: str
    version: int
