"""What the secrets routes ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.mfa.deps import MfaServiceDep
from wakedock.secrets.service import SecretStore
from wakedock.web.provided import provider

secret_store = provider(SecretStore)
SecretStoreDep = Annotated[SecretStore, Depends(secret_store)]

# Revealing a value needs a recent MFA proof (step-up): the MFA service checks it.
StepUpDep = MfaServiceDep
