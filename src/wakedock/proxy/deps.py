"""What the proxy's routes on the admin host ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.auth.sessions import SessionStore
from wakedock.mfa.service import MfaService
from wakedock.proxy.access import ProxyAccess
from wakedock.proxy.directory import ServiceDirectory
from wakedock.web.provided import provider

proxy_access = provider(ProxyAccess)
ProxyAccessDep = Annotated[ProxyAccess, Depends(proxy_access)]
service_directory = provider(ServiceDirectory)
ServiceDirectoryDep = Annotated[ServiceDirectory, Depends(service_directory)]
session_store = provider(SessionStore)
SessionStoreDep = Annotated[SessionStore, Depends(session_store)]
mfa_service = provider(MfaService)
MfaServiceDep = Annotated[MfaService, Depends(mfa_service)]
