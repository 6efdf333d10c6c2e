"""What the proxy's routes on the admin host ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.proxy.access import ProxyAccess
from wakedock.proxy.directory import ServiceDirectory
from wakedock.proxy.themes import LoadingPages
from wakedock.web.provided import provider

proxy_access = provider(ProxyAccess)
ProxyAccessDep = Annotated[ProxyAccess, Depends(proxy_access)]
service_directory = provider(ServiceDirectory)
ServiceDirectoryDep = Annotated[ServiceDirectory, Depends(service_directory)]
loading_pages = provider(LoadingPages)
LoadingPagesDep = Annotated[LoadingPages, Depends(loading_pages)]
