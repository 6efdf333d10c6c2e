"""Sign-in and account request and response shapes (under /api/v1/auth)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from wakedock.users.schemas import UserOut
from wakedock.users.service import USERNAME_INPUT_PATTERN

# How a signed-in client carries its session: bearer tokens in the body, or a session cookie
# (with a CSRF token) for a browser.
SessionMode = Literal["token", "cookie"]


class LoginRequest(BaseModel):
    # OAuth2 password-form clients send extra fields (grant_type, scope): ignored.
    model_config = ConfigDict(extra="ignore")

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)
    mode: SessionMode = "token"
    # One-step MFA login: the TOTP or backup code with the password.
    code: str | None = Field(default=None, min_length=1, max_length=32)


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenge_token: str = Field(min_length=1, max_length=4096)
    code: str = Field(min_length=1, max_length=32)
    mode: SessionMode = "token"


class MfaChallengeResponse(BaseModel):
    requires_mfa: Literal[True] = True
    challenge_token: str
    expires_in: int


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a name, not a secret
    expires_in: int
    refresh_token: str
    session_id: str
    user: UserOut


class CookieLoginResponse(BaseModel):
    csrf_token: str
    session_id: str
    expires_in: int
    user: UserOut


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=256)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(max_length=1024)


class RegisterRequest(BaseModel):
    # A `role` (or any other unknown field) is refused: registration grants least privilege.
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_INPUT_PATTERN)
    password: str = Field(max_length=1024)
    email: EmailStr | None = None


class SetupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256)
    username: str = Field(pattern=USERNAME_INPUT_PATTERN)
    password: str = Field(max_length=1024)
    email: EmailStr | None = None


class SessionOut(BaseModel):
    id: str
    user_id: int
    ip: str
    user_agent: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    mfa_at: datetime | None
    current: bool


class CsrfResponse(BaseModel):
    csrf_token: str
