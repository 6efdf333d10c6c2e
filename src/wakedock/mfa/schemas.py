"""MFA request and response shapes. A TOTP secret appears only in the enrolment answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=32)


class DisableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=1, max_length=32)


class EnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str
    qr_png_base64: str


class BackupCodesOut(BaseModel):
    backup_codes: list[str]


class StatusOut(BaseModel):
    enabled: bool
    required: bool
    enabled_at: datetime | None
    backup_codes_remaining: int


class StepUpOut(BaseModel):
    mfa_at: datetime
    valid_for_seconds: int


class RoleAdoption(BaseModel):
    users: int
    enrolled: int
    percent: float


class AdoptionOut(BaseModel):
    by_role: dict[str, RoleAdoption]
    total_users: int
    total_enrolled: int
