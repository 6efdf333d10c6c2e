"""Which service a Host header names: `<name>.<base_domain>`, or one of a service's own hosts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from wakedock.services.service import ServiceManager
from wakedock.services.views import ServiceView

# A new or changed service becomes routable within this delay (also the cache lifetime).
REFRESH_SECONDS = 1.0


def normalise_host(raw: str | None) -> str | None:
    """Lower-case, without port, brackets or a trailing dot; None when absent or malformed."""
    if not raw or len(raw) > 300 or any(ch.isspace() or ord(ch) < 0x21 for ch in raw):
        return None
    host = raw.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".") or None


@dataclass(frozen=True)
class Route:
    service: ServiceView


class ServiceDirectory:
    """A host-name map of the services, refreshed from the database at most once a second."""

    def __init__(self, services: ServiceManager, base_domain: str) -> None:
        self._services = services
        self._suffix = "." + base_domain
        self._by_host: dict[str, ServiceView] = {}
        self._loaded_at = float("-inf")

    def refresh(self) -> None:
        """Reload the map (blocking: call it off the event loop)."""
        by_host: dict[str, ServiceView] = {}
        for view in self._services.list():
            by_host[view.name + self._suffix] = view
            for host in view.spec.hosts:
                by_host.setdefault(host, view)
        self._by_host = by_host
        self._loaded_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= REFRESH_SECONDS

    def lookup(self, host: str) -> ServiceView | None:
        return self._by_host.get(host)

    def knows(self, host: str) -> bool:
        return host in self._by_host
