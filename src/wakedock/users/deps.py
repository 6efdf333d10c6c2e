"""What the account handlers ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.users.service import UserService
from wakedock.users.sessions import SessionAdmin
from wakedock.users.signup import Signup
from wakedock.web.provided import provider

user_service = provider(UserService)
UserServiceDep = Annotated[UserService, Depends(user_service)]
signup = provider(Signup)
SignupDep = Annotated[Signup, Depends(signup)]
session_admin = provider(SessionAdmin)
SessionAdminDep = Annotated[SessionAdmin, Depends(session_admin)]
