"""Which service a Host header names: `<name>.<base_domain>`, or one of a service's own hosts."""

from __future__ import annotations

import re

from wakedock.clock import Clock
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import ServiceView

# A new or changed service becomes routable within this delay (also the cache lifetime).
REFRESH_SECONDS = 1.0


_NAME = re.compile(r"^[a-z0-9.-]{1,253}$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def normalise_host(raw: str | None) -> str | None:
    """The host of a Host header: lower-case, without port, brackets or a trailing dot.

    None when absent or not strictly `name[:port]` / `[ipv6][:port]`: a header such as
    `app.localhost:443@evil.example` routes nowhere rather than being guessed at.
    """
    if not raw or len(raw) > 300:
        return None
    host = raw.lower()
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end > 0 else "?"
        if end <= 0 or (rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:]))):
            return None
        address = host[1:end]
        return address if re.fullmatch(r"[0-9a-f:.]+", address) else None
    name, _, port = host.partition(":")
    if port and not _PORT.fullmatch(port):
        return None
    name = name.rstrip(".")
    return name if _NAME.fullmatch(name) else None


class ServiceDirectory:
    """A host-name map of the services, refreshed from the database at most once a second."""

    def __init__(self, services: ServiceManager, base_domain: str, clock: Clock) -> None:
        self._services = services
        self._clock = clock
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
        self._loaded_at = self._clock.monotonic()

    def stale(self) -> bool:
        return self._clock.monotonic() - self._loaded_at >= REFRESH_SECONDS

    def lookup(self, host: str) -> ServiceView | None:
        return self._by_host.get(host)

    def knows(self, host: str) -> bool:
        return host in self._by_host
