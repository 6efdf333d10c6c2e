"""The outermost ASGI app (S7.1): the Host header decides between the admin API and a service.

Admin host names reach the admin application; `<name>.<base_domain>` and each service's own
host names reach the proxy; any other host (or a malformed Host) gets 404 (never the API), with
the same security headers as every answer WakeDock writes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wakedock.proxy import pages
from wakedock.proxy.app import ProxyApp
from wakedock.proxy.hosts import ServiceDirectory, normalise_host
from wakedock.proxy.reaper import IdleReaper
from wakedock.proxy.wake import WakeCoordinator
from wakedock.web.errors import Outages, outage_of
from wakedock.web.headers import SecurityHeaders


class HostRouter:
    def __init__(
        self,
        admin: ASGIApp,
        proxy: ProxyApp,
        directory: ServiceDirectory,
        coordinator: WakeCoordinator,
        reaper: IdleReaper,
        admin_hosts: list[str],
        headers: SecurityHeaders,
        outages: Outages,
        on_startup: list[Callable[[], None]] | None = None,
        on_shutdown: list[Callable[[], None]] | None = None,
    ) -> None:
        self._outages = outages
        self.admin = admin
        self._proxy = proxy
        self._directory = directory
        self._coordinator = coordinator
        self._reaper = reaper
        self._admin_hosts = frozenset(admin_hosts)
        self._headers = headers
        self._reaper_task: asyncio.Task[None] | None = None
        # Blocking start/stop of background work (e.g. SIEM delivery threads).
        self._on_startup = on_startup or []
        self._on_shutdown = on_shutdown or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        host = normalise_host(raw)
        if host is not None and host in self._admin_hosts:
            await self.admin(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._service_host(host, scope, receive, tracking_send)
        except Exception as exc:
            # As on the admin host (web/errors.py): a database outage is a 503, logged once.
            outage = outage_of(exc)
            if outage is None or started or scope["type"] != "http":
                raise
            self._outages.down(outage, exc)
            unavailable = pages.message_page(
                "Service unavailable",
                "WakeDock cannot reach its database. Try again in a few seconds.",
                503,
                outage.headers(),
                code="dependency_unavailable",
            )
            await unavailable(scope, receive, self._headers.wrap(scope, send, no_store=True))

    async def _service_host(
        self, host: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        view = None
        if host is not None:
            if self._directory.stale():
                await run_in_threadpool(self._directory.refresh)
            view = self._directory.lookup(host)
        if view is None or host is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            unknown = pages.message_page(
                "Unknown host", "No service answers at this address.", 404, code="unknown_host"
            )
            await unknown(scope, receive, self._headers.wrap(scope, send, no_store=True))
            return
        await self._proxy.handle(view, host, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in self._on_startup:
                    await run_in_threadpool(hook)
                self._reaper_task = asyncio.create_task(self._reaper.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._reaper_task is not None:
                    self._reaper_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._reaper_task
                await self._proxy.aclose()
                await self._coordinator.aclose()
                for hook in self._on_shutdown:
                    await run_in_threadpool(hook)
                await send({"type": "lifespan.shutdown.complete"})
                return
