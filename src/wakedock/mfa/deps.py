"""What the MFA handlers ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.mfa.service import MfaService
from wakedock.web.provided import provider

mfa_service = provider(MfaService)
MfaServiceDep = Annotated[MfaService, Depends(mfa_service)]
