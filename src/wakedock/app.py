"""create_app(settings) -> the ASGI application. Wiring only; the rules live in the features."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from wakedock import __version__
from wakedock.account.page import ACCOUNT_PATH
from wakedock.account.router import router as account_router
from wakedock.audit.router import router as audit_router
from wakedock.auth.forms import FORM_PATHS, MAX_FORM_BYTES, FreshCodeOnPage, fresh_code_first
from wakedock.auth.zerotrust import RequestWeigher
from wakedock.cluster.activity import SharedActivity
from wakedock.cluster.leadership import Leadership
from wakedock.cluster.leases import Leases
from wakedock.components import Components, provided
from wakedock.console.routes.audit import router as console_audit_router
from wakedock.console.routes.index import router as console_router
from wakedock.console.routes.posture import router as console_posture_router
from wakedock.console.routes.secrets import router as console_secrets_router
from wakedock.console.routes.sessions import router as console_sessions_router
from wakedock.console.routes.settings import router as console_settings_router
from wakedock.console.routes.user_account import router as console_account_router
from wakedock.console.routes.users import router as console_users_router
from wakedock.dashboard.csp import CSP_REPORT_PATH, MAX_CSP_REPORT_BYTES
from wakedock.dashboard.detail_pages import router as service_page_router
from wakedock.dashboard.form import router as service_form_router
from wakedock.dashboard.pages import router as dashboard_router
from wakedock.dashboard.preview import router as preview_router
from wakedock.dashboard.router import router as csp_router
from wakedock.files.router import router as files_router
from wakedock.files.store import MAX_FILE_BYTES
from wakedock.health.router import router as health_router
from wakedock.login.home import router as pages_router
from wakedock.login.pages import router as login_router
from wakedock.login.router import MAX_LOGIN_BODY_BYTES
from wakedock.login.router import router as auth_router
from wakedock.metrics.router import router as metrics_router
from wakedock.mfa.pages import router as enrol_router
from wakedock.mfa.router import admin_router as mfa_admin_router
from wakedock.mfa.router import router as mfa_router
from wakedock.mfa.step_up_page import router as step_up_page_router
from wakedock.proxy.edge_activity import EdgeActivity, activity_socket
from wakedock.proxy.handler import ProxyApp, admin_url
from wakedock.proxy.handoff import router as handoff_router
from wakedock.proxy.reaper import IdleReaper
from wakedock.proxy.routing import HostRouter
from wakedock.proxy.shared import SharedTraffic, WakeClaims
from wakedock.secrets.router import router as secrets_router
from wakedock.services.router import router as services_router
from wakedock.settings.router import router as settings_router
from wakedock.siem.router import router as siem_router
from wakedock.users.router import router as users_router
from wakedock.web.body_limit import BodyLimitMiddleware
from wakedock.web.client_ip import TrustedProxies
from wakedock.web.errors import CatchAllMiddleware, install_error_handlers
from wakedock.web.headers import SecurityHeaders, SecurityHeadersMiddleware
from wakedock.web.openapi import install_openapi

log = logging.getLogger("wakedock.server")
# How often the leader drops the zero-trust sign-in history past its retention.
_PRUNE_EVERY_SECONDS = 3600


def create_app(components: Components) -> FastAPI:
    """Build the application around already-wired components."""
    http = components.settings.http
    docs = http.docs_enabled
    app = FastAPI(
        title="WakeDock",
        version=__version__,
        docs_url="/api/docs" if docs else None,
        redoc_url=None,
        openapi_url="/api/openapi.json" if docs else None,
    )
    app.state.provided = provided(components)
    for router in (
        health_router,
        auth_router,
        mfa_router,
        mfa_admin_router,
        users_router,
        services_router,
        audit_router,
        siem_router,
        secrets_router,
        settings_router,
        metrics_router,
        files_router,
        login_router,
        handoff_router,
        enrol_router,
        step_up_page_router,
        account_router,
        pages_router,
        console_router,
        console_users_router,
        console_account_router,
        console_sessions_router,
        console_secrets_router,
        console_settings_router,
        console_posture_router,
        console_audit_router,
        # Before the services page's: its `/services/{name}/{action}` would take `edit`.
        service_form_router,
        dashboard_router,
        preview_router,
        csp_router,
        # Last: `/services/{name}` must not shadow the services pages' fixed paths.
        service_page_router,
    ):
        app.include_router(router)
    install_error_handlers(app)
    app.add_exception_handler(FreshCodeOnPage, _fresh_code_first)
    install_openapi(app)
    # Added innermost first: the security headers wrap everything, even CORS answers and 500s.
    app.add_middleware(CatchAllMiddleware, outages=components.outages)
    # Every route has a body limit; the few that need another one than the default declare it.
    app.add_middleware(
        BodyLimitMiddleware,
        default=http.max_body_bytes,
        limits={
            "/api/v1/files/": MAX_FILE_BYTES,
            "/api/v1/auth/login": MAX_LOGIN_BODY_BYTES,
            **dict.fromkeys(FORM_PATHS, MAX_FORM_BYTES),
            f"{ACCOUNT_PATH}/": MAX_FORM_BYTES,
            CSP_REPORT_PATH: MAX_CSP_REPORT_BYTES,
        },
    )
    if http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(http.cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
            max_age=600,
        )
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts_max_age=http.hsts_max_age,
        hsts_always=http.hsts_behind_proxy,
        csp_report_uri=CSP_REPORT_PATH,
    )
    return app


def create_asgi(components: Components, leadership: Leadership | None = None) -> HostRouter:
    """The served application: admin hosts reach `create_app`, service hosts the proxy (S7.1).

    `leadership`: this process is one of several workers (server.workers > 1); what must run
    once runs only while it leads, and wakes and traffic are shared through the database.
    """
    settings = components.settings
    headers = SecurityHeaders(
        hsts_max_age=settings.http.hsts_max_age, hsts_always=settings.http.hsts_behind_proxy
    )
    proxy = ProxyApp(
        components.wakes,
        components.activity,
        components.proxy_access,
        headers,
        TrustedProxies(components.trusted_proxies),
        components.loading_pages,
        admin_url=admin_url(settings.proxy, settings.server.port),
        upstream_timeout_s=settings.proxy.upstream_timeout_seconds,
    )
    reaper = IdleReaper(
        components.wakes,
        components.activity,
        components.services,
        interval=settings.proxy.reaper_interval_seconds,
        busy_cpu_percent=settings.proxy.idle_busy_cpu_percent,
    )
    traffic: SharedTraffic | None = None
    if leadership is not None:
        clock = components.clock
        traffic = SharedTraffic(
            components.activity, SharedActivity(components.db, clock), leadership.holder, clock
        )
        claims = WakeClaims(Leases(components.db, clock), leadership.holder)
        components.wakes.share(claims, components.directory.running)
        reaper.share(traffic, lambda: leadership.leading)
        components.siem.only_while(lambda: leadership.leading)
        if components.discovery is not None:
            components.discovery.lead_only_while(lambda: leadership.leading)
    return HostRouter(
        create_app(components),
        proxy,
        components.directory,
        settings.proxy.admin_hosts,
        headers,
        components.outages,
        lifespan=lambda: lifespan(components, proxy, reaper, leadership, traffic),
        counts=components.request_counts,
    )


@asynccontextmanager
async def lifespan(
    components: Components,
    proxy: ProxyApp,
    reaper: IdleReaper,
    leadership: Leadership | None = None,
    traffic: SharedTraffic | None = None,
) -> AsyncIterator[None]:
    """What runs while the server runs: SIEM delivery, the secret watcher, live discovery
    (docker.live_discovery: services/watch.py), the idle reaper,
    the poller of the service host map (loaded once before the first request), with
    edge.direct_routes auto or true the listener of the edge's direct traffic
    (proxy/edge_activity.py), and with several workers the leader election and the flush of
    this worker's traffic (first started, last stopped: the lease is handed over at once on a
    graceful stop).

    Started in this order and stopped in the reverse one. What needs closing whether or not
    the start-up got that far (HTTP clients, health probes, the Vault token WakeDock logged in
    for) is closed last; every stop runs even when an earlier one failed (the error is raised
    once all ran).
    """
    async with AsyncExitStack() as stack:
        for close in reversed(_closers(components)):
            stack.push_async_callback(run_in_threadpool, close)
        stack.push_async_callback(components.wakes.aclose)
        stack.push_async_callback(proxy.aclose)
        if leadership is not None:
            stack.push_async_callback(leadership.resign)
            await leadership.attempt()
            stack.push_async_callback(_cancelled, asyncio.create_task(leadership.run()))
        if traffic is not None:
            named = components.directory.named
            flushing = asyncio.create_task(
                traffic.run(lambda: components.wakes.drop_stopped(named))
            )
            stack.push_async_callback(_cancelled, flushing)
        # Blocking start/stop of background threads: off the event loop.
        parts: list[tuple[Callable[[], None], Callable[[], None]]] = [
            (components.siem.start, components.siem.stop),
            (components.secret_watcher.start, components.secret_watcher.stop),
        ]
        if components.discovery is not None:
            parts.append((components.discovery.start, components.discovery.stop))
        for start, stop in parts:
            await run_in_threadpool(start)
            stack.push_async_callback(run_in_threadpool, stop)
        weigher = components.guard.zero_trust
        if weigher is not None and weigher.enabled:
            # The bundled country database takes ~0.6 s to load: not on the first request.
            warming = asyncio.create_task(run_in_threadpool(weigher.warm))
            stack.push_async_callback(_cancelled, warming)
            leading = (lambda: True) if leadership is None else (lambda: leadership.leading)
            pruning = asyncio.create_task(_prune_sign_ins(weigher, leading))
            stack.push_async_callback(_cancelled, pruning)
        reaping = asyncio.create_task(reaper.run())
        stack.push_async_callback(_cancelled, reaping)
        await components.directory.load()
        polling = asyncio.create_task(components.directory.run())
        stack.push_async_callback(_cancelled, polling)
        settings = components.settings
        if settings.edge.direct_routes_rendered:
            edge = EdgeActivity(
                activity_socket(settings.data_dir),
                components.directory.lookup,
                components.activity,
                adopt=components.wakes.adopt,
            )
            try:
                await edge.start()
            except OSError as exc:
                if settings.edge.direct_routes is True:
                    raise
                # auto, perhaps with no edge at all: serve without the edge's activity.
                log.error(
                    "cannot listen for the edge's direct traffic (%s): an edge with direct "
                    "routes would see its services stopped under traffic",
                    exc,
                )
            else:
                stack.push_async_callback(edge.stop)
        yield


async def _fresh_code_first(_request: Request, exc: Exception) -> Response:
    """A page the zero-trust engine stepped up: the code page, then back to it."""
    if not isinstance(exc, FreshCodeOnPage):  # registered for that type only
        raise exc
    return fresh_code_first(exc.next_path)


async def _prune_sign_ins(weigher: RequestWeigher, leading: Callable[[], bool]) -> None:
    """The zero-trust sign-in history past its retention, dropped at start and every hour by
    the leader (docs/zerotrust.md, "What is stored")."""
    while True:
        if leading():
            try:
                dropped = await run_in_threadpool(weigher.prune)
            except Exception:  # an outage: the next round tries again
                log.exception("could not prune the zero-trust sign-in history")
            else:
                if dropped:
                    log.info("pruned %d zero-trust sign-in rows past their retention", dropped)
        await asyncio.sleep(_PRUNE_EVERY_SECONDS)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _closers(components: Components) -> list[Callable[[], None]]:
    """Closed at shutdown, in this order: the health probes, then the Vault token WakeDock
    logged in for (revoked when the server stops)."""
    provider = components.secret_provider
    return [components.health.close, *([provider.close] if provider is not None else [])]
