"""What the sign-in handlers ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.login.password import PasswordChanger
from wakedock.login.service import LoginFlow
from wakedock.web.provided import provider

login_flow = provider(LoginFlow)
LoginFlowDep = Annotated[LoginFlow, Depends(login_flow)]
password_changer = provider(PasswordChanger)
PasswordChangerDep = Annotated[PasswordChanger, Depends(password_changer)]
