"""What the secrets routes ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.mfa.deps import MfaServiceDep
from wakedock.secrets.base import SecretProvider
from wakedock.secrets.service import SecretStore
from wakedock.web.provided import provider

secret_store = provider(SecretStore)
SecretStoreDep = Annotated[SecretStore, Depends(secret_store)]

# The backend `secret:` references are read from (its name and whether it is degraded).
secret_provider = provider(SecretProvider)  # type: ignore[type-abstract]
SecretProviderDep = Annotated[SecretProvider, Depends(secret_provider)]

# Revealing a value needs a recent MFA proof (step-up): the MFA service checks it.
StepUpDep = MfaServiceDep
