"""User shapes on the wire. Password hashes never leave the server."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from wakedock.rbac.permissions import Role
from wakedock.users.service import USERNAME_INPUT_PATTERN


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str | None
    role: str
    disabled: bool
    created_at: datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_INPUT_PATTERN)
    password: str = Field(max_length=1024)
    role: Role
    email: EmailStr | None = None


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    email: EmailStr | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=1024)
