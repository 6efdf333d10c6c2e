"""The outermost ASGI app (S7.1): the Host header decides between the admin API and a service.

Admin host names reach the admin application; `<name>.<base_domain>` and each service's own
host names reach the proxy; any other host (or a malformed Host) gets 404 (never the API), with
the same security headers as every answer WakeDock writes itself.

The ASGI lifespan protocol is answered by running the application's `lifespan` (app.py): what
starts and stops with the server is decided there, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wakedock.cluster.counters import RequestCounts
from wakedock.proxy import pages
from wakedock.proxy.directory import ServiceDirectory, normalise_host
from wakedock.proxy.handler import ProxyApp
from wakedock.web.errors import Outages, outage_of
from wakedock.web.headers import SecurityHeaders

Lifespan = Callable[[], AbstractAsyncContextManager[None]]


class HostRouter:
    def __init__(
        self,
        admin: ASGIApp,
        proxy: ProxyApp,
        directory: ServiceDirectory,
        admin_hosts: list[str],
        headers: SecurityHeaders,
        outages: Outages,
        lifespan: Lifespan | None = None,
        counts: RequestCounts | None = None,
    ) -> None:
        self._outages = outages
        self._counts = counts or RequestCounts()
        self.admin = admin
        self._proxy = proxy
        self._directory = directory
        self._admin_hosts = frozenset(admin_hosts)
        self._headers = headers
        self._lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
            return
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        host = normalise_host(raw)
        if host is not None and host in self._admin_hosts:
            self._counts.admin.inc()
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
        # The map is kept current in the background (directory.py): a lookup never waits.
        view = None if host is None else self._directory.lookup(host)
        if view is None or host is None:
            self._counts.unknown.inc()
            failure = self._directory.failure
            if failure is not None and outage_of(failure) is not None:
                # Maybe a service the map could not learn of: the outage answer, not a 404.
                # Raised afresh (no traceback kept): they would pile up on the one object.
                raise failure.with_traceback(None)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            unknown = pages.message_page(
                "Unknown host", "No service answers at this address.", 404, code="unknown_host"
            )
            await unknown(scope, receive, self._headers.wrap(scope, send, no_store=True))
            return
        self._counts.service.inc()
        await self._proxy.handle(view, host, scope, receive, send)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol around `lifespan`: a failure is reported as such (the
        server then exits), after the lifespan has undone what it had started."""
        await receive()  # lifespan.startup
        phase = "startup"
        running = self._lifespan() if self._lifespan is not None else nullcontext()
        try:
            async with running:
                await send({"type": "lifespan.startup.complete"})
                phase = "shutdown"
                await receive()  # lifespan.shutdown
        except BaseException as exc:
            await send({"type": f"lifespan.{phase}.failed", "message": _described(exc)})
            raise
        await send({"type": "lifespan.shutdown.complete"})


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
