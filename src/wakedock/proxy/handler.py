"""One request to a service host: ask the wake coordinator, render its decision, proxy.

The coordinator decides (access, wake budget, capacity, the wake to join: `Ready | Waking |
Refused`); this handler only turns that decision into an answer: the forwarded request, the
loading page, a wait for the wake, or WakeDock's own page for a refusal.
"""

from __future__ import annotations

import logging
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Message, Receive, Scope, Send

from wakedock.config import ProxySettings
from wakedock.context import RequestContext
from wakedock.errors import NotAuthenticated
from wakedock.proxy import pages
from wakedock.proxy.access import HANDOFF_PATH, Access, ProxyAccess, cookie_name
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.decision import Refusal, Refused, WakeFailed, Waking
from wakedock.proxy.forward import forward_http, upstream_headers
from wakedock.proxy.themes import LoadingPages
from wakedock.proxy.upstream import (
    UpstreamClient,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from wakedock.proxy.wake import WakeCoordinator
from wakedock.proxy.websocket import forward_websocket
from wakedock.runtime.base import Endpoint
from wakedock.services.snapshots import ServiceView, WakePhase
from wakedock.web.client_ip import (
    TrustedProxies,
    client_headers,
    connection_context,
    is_trusted,
    peer_of,
)
from wakedock.web.headers import SecurityHeaders
from wakedock.web.redirects import local_path

_RETRY_SECONDS = "5"

log = logging.getLogger("wakedock.proxy")


def admin_url(settings: ProxySettings, server_port: int) -> str:
    """Where a visitor of a protected service signs in: the configured URL, or the first admin
    host on the server's port."""
    return settings.admin_url or f"https://{_url_host(settings.admin_hosts[0])}:{server_port}"


class ProxyApp:
    def __init__(
        self,
        coordinator: WakeCoordinator,
        activity: ActivityTracker,
        access: ProxyAccess,
        headers: SecurityHeaders,
        trusted: TrustedProxies,
        loading: LoadingPages,
        *,
        admin_url: str,
        upstream_timeout_s: float,
    ) -> None:
        # On WakeDock's own answers only (pages, redirects): a service's answers are its own.
        self._headers = headers
        self._wake = coordinator
        self._activity = activity
        self._access = access
        self._trusted = trusted
        self._loading = loading
        self._admin_url = admin_url
        self._client = UpstreamClient(timeout_s=upstream_timeout_s, connect_timeout_s=5.0)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def handle(
        self, view: ServiceView, host: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        # First: it gives the request its id, which the context carries (a refusal's reference).
        own = self._headers.wrap(scope, send, no_store=True)
        context = connection_context(scope, self._trusted)
        path: str = scope["path"]
        if scope["type"] == "http" and path.startswith(pages.PREFIX + "/"):
            response = await self._own_route(view, host, scope, path, context)
            await response(scope, receive, own)
            return
        principal = None
        if view.spec.access.policy != "public":
            principal = await run_in_threadpool(
                self._access.principal, _cookie(headers, cookie_name(scope["scheme"])), host
            )
            if principal is not None:
                context = context.as_actor(principal.username)
        decision = await self._wake.request(
            view, principal, context, lambda: self._client_headers(scope)
        )
        if isinstance(decision, Refused):
            await self._refused(decision, scope, headers, host)(scope, receive, own)
            return
        with self._activity.connection(view.name):
            if isinstance(decision, Waking):
                outcome = await self._wait(decision, view, scope, headers, context)
                if isinstance(outcome, Response):
                    await outcome(scope, receive, own)
                    return
                endpoint = outcome
            else:
                endpoint = decision.endpoint
            peer = peer_of(scope)
            trusted = peer is not None and is_trusted(peer, self._trusted.networks)
            upstream = upstream_headers(
                scope,
                peer or context.ip or "unknown",
                trusted_peer=trusted,
                proto="https" if scope["scheme"] in ("https", "wss") else "http",
                host=headers.get("host", ""),
            )
            await self._forward(view, scope, receive, send, endpoint, upstream, context)

    async def _forward(
        self,
        view: ServiceView,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: Endpoint,
        upstream: list[tuple[bytes, bytes]],
        context: RequestContext,
    ) -> None:
        if scope["type"] == "websocket":
            query = scope.get("query_string", b"").decode("latin-1")
            url = f"ws://{endpoint.host}:{endpoint.port}{scope['path']}" + (
                f"?{query}" if query else ""
            )
            await forward_websocket(scope, receive, send, url=url, headers=upstream)
            return
        started = False
        unavailable: Response | None = None

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        for attempt in (1, 2):
            try:
                await forward_http(
                    self._client,
                    scope,
                    receive,
                    tracked,
                    host=endpoint.host,
                    port=endpoint.port,
                    headers=upstream,
                )
                return
            except UpstreamConnectError as exc:
                # Stopped behind WakeDock's back: wake it again (a body can be sent only once).
                self._wake.forget(view.name)
                if attempt == 2 or scope["method"] not in ("GET", "HEAD"):
                    log.warning("service %s: %s", view.name, exc)
                    break
                try:
                    endpoint = await self._wake.ensure_awake(view, context)
                except WakeFailed:
                    break
            except UpstreamTimeout as exc:
                if started:
                    raise  # mid-response: all a proxy can do is cut the connection
                log.warning("service %s: %s", view.name, exc)
                unavailable = pages.message_page(
                    "Service timed out",
                    "The service did not answer in time. Try again.",
                    504,
                    code="gateway_timeout",
                )
                break
            except UpstreamError as exc:
                if started:
                    raise
                log.warning("service %s: %s", view.name, exc)
                break
        unavailable = unavailable or pages.message_page(
            "Service unavailable", "The service did not answer. Try again.", 502
        )
        await unavailable(scope, receive, self._headers.wrap(scope, send, no_store=True))

    async def _wait(
        self,
        waking: Waking,
        view: ServiceView,
        scope: Scope,
        headers: dict[str, str],
        context: RequestContext,
    ) -> Endpoint | Response:
        """A browser gets the loading page of the service's theme at once; any other client
        waits for the wake."""
        name = view.spec.display_name or view.name
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and pages.wants_html(headers.get("accept", ""))
        ):
            if view.spec.loading_page.theme == "custom":
                # A file read, perhaps the sandbox's process: off the event loop.
                page = await run_in_threadpool(self._loading.render, view, context)
            else:
                page = self._loading.render(view, context)
            return pages.loading_page(name, page.body, pages.STYLESHEETS[page.stylesheet_name])
        try:
            return await waking.ready()
        except TimeoutError:
            return pages.message_page(
                f"{name} is still starting",
                "Try again in a few seconds.",
                503,
                {"Retry-After": _RETRY_SECONDS},
            )
        except WakeFailed as exc:
            if exc.timed_out:
                return pages.message_page(
                    f"{name} is still starting",
                    "It did not become ready in time. Try again in a few seconds.",
                    503,
                    {"Retry-After": _RETRY_SECONDS},
                )
            # The visitor was admitted to this service; the cause itself (engine messages,
            # image names) is for administrators: it is in the audit trail and the server log.
            return pages.message_page(
                f"{name} could not be started",
                "An administrator can find the cause in the audit trail. Try again later.",
                502,
            )

    def _client_headers(self, scope: Scope) -> dict[str, str]:
        peer = peer_of(scope)
        proxied = peer is not None and is_trusted(peer, self._trusted.networks)
        return client_headers(scope["headers"], from_trusted_proxy=proxied)

    def _refused(
        self, refused: Refused, scope: Scope, headers: dict[str, str], host: str
    ) -> Response:
        reference = f" Reference: {refused.reference or 'none'}."
        if refused.reason is Refusal.DENIED:
            return pages.message_page(
                "Access refused",
                "The access policy refused this visit. If you think it should not have, give "
                f"an administrator its reference.{reference}",
                403,
                code="zero_trust_denied",
            )
        if refused.reason is Refusal.STEP_UP_WITHOUT_MFA:
            return pages.message_page(
                "Verification needed",
                "The access policy asks for a code from an authenticator app, and your account "
                f"has none. Enrol one in WakeDock, or ask an administrator.{reference}",
                403,
                code="zero_trust_step_up",
            )
        if refused.reason is Refusal.STEP_UP and not _is_page_visit(scope, headers):
            return pages.message_page(
                "Verification needed",
                "The access policy asks for a fresh code from your authenticator app: open "
                f"this address in a browser to give it.{reference}",
                403,
                code="step_up_required",
            )
        if refused.reason is Refusal.FORBIDDEN:
            return pages.message_page("Forbidden", "Your role may not use this service.", 403)
        if refused.reason is Refusal.TOO_MANY_WAKES:
            return pages.message_page(
                "Too many wake-ups",
                "This address woke services too often. Wait a little and try again.",
                429,
                {"Retry-After": str(refused.retry_after)},
            )
        if refused.reason is Refusal.BUSY:
            return pages.message_page(
                "Server busy", refused.detail, 503, {"Retry-After": _RETRY_SECONDS}
            )
        if _is_page_visit(scope, headers):
            # To the admin host: sign in, or (STEP_UP) give a fresh code, then come back.
            query = scope.get("query_string", b"").decode("latin-1")
            here = f"{scope['scheme']}://{headers.get('host', host)}{scope['path']}"
            here += f"?{query}" if query else ""
            code = "&step_up=1" if refused.reason is Refusal.STEP_UP else ""
            return RedirectResponse(
                f"{self._admin_url}{HANDOFF_PATH}?next={quote(here, safe='')}{code}",
                status_code=303,
            )
        return pages.message_page(
            "Sign-in required", "Sign in to WakeDock to use this service.", 401
        )

    async def _own_route(
        self, view: ServiceView, host: str, scope: Scope, path: str, context: RequestContext
    ) -> Response:
        asset = pages.asset(path)
        if asset is not None:
            return asset
        if path == pages.STATUS_PATH:
            return self._status(view)
        if path == f"{pages.PREFIX}/auth":
            return await self._redeem(host, scope, context)
        if path == pages.EDGE_AUTH_PATH:
            return await self._edge_auth(view, host, scope)
        return pages.message_page("Not found", "No such page.", 404)

    def _status(self, view: ServiceView) -> Response:
        snapshot = self._wake.snapshot(view.name)
        if snapshot.phase is WakePhase.READY:
            body: dict[str, object] = {"state": "ready", "progress": 100}
        elif snapshot.phase is WakePhase.FAILED:
            body = {
                "state": "failed",
                "message": "The service could not be started. Reload to try again.",
            }
        else:
            elapsed = snapshot.waking_for or 0.0
            share = min(95, 5 + int(90 * elapsed / max(view.spec.wake_timeout_s, 1)))
            waking = snapshot.phase is WakePhase.WAKING
            body = {"state": "waking" if waking else "asleep", "progress": share}
        return JSONResponse(body, headers=pages.PAGE_HEADERS)

    async def _edge_auth(self, view: ServiceView, host: str, scope: Scope) -> Response:
        """The edge's access check (nginx `auth_request`, docs/edge.md): 204 when the caller's
        own service host cookie admits it to this service, 401 (sign in) or 403 (its role may
        not), with no body: what the proxy itself would decide, and nothing else. The edge
        keeps the path internal; asked directly, it tells a caller only about its own cookie."""
        principal = None
        if view.spec.access.policy != "public":
            raw = dict(scope["headers"]).get(b"cookie", b"").decode("latin-1")
            principal = await run_in_threadpool(
                self._access.principal, _cookie({"cookie": raw}, cookie_name(scope["scheme"])), host
            )
        access = self._access.decide(view, principal)
        status = {Access.ALLOW: 204, Access.LOGIN: 401, Access.FORBIDDEN: 403}[access]
        if access is Access.ALLOW:
            # The edge routes a service directly only while it is awake: the `request` profile.
            context = connection_context(scope, self._trusted)
            if principal is not None:
                context = context.as_actor(principal.username)
            refused = await self._wake.trusted(
                view, principal, context, lambda: self._client_headers(scope)
            )
            if refused is not None:
                # A deny is WakeDock's page (the edge hands a 403 of this check back to it); a
                # step-up goes through WakeDock, which sends a browser for its code.
                status = 403 if refused.reason is Refusal.DENIED else 401
        return Response(status_code=status, headers=pages.PAGE_HEADERS)

    async def _redeem(self, host: str, scope: Scope, context: RequestContext) -> Response:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ticket = (query.get("ticket") or [""])[0]
        target = local_path((query.get("next") or ["/"])[0])
        try:
            value = await run_in_threadpool(self._access.redeem_ticket, ticket, host, context)
        except NotAuthenticated as exc:
            return pages.message_page("Sign-in failed", exc.detail, 401)
        response = RedirectResponse(target, status_code=303)
        https = scope["scheme"] == "https"
        response.set_cookie(
            cookie_name(scope["scheme"]),
            value,
            max_age=self._access.cookie_seconds,
            path="/",
            secure=https,
            httponly=True,
            samesite="lax",
        )
        for key, header in pages.PAGE_HEADERS.items():
            response.headers[key] = header
        return response


def _is_page_visit(scope: Scope, headers: dict[str, str]) -> bool:
    """A browser opening a page: it can follow a redirect to a form and come back."""
    return scope["type"] == "http" and pages.wants_html(headers.get("accept", ""))


def _cookie(headers: dict[str, str], name: str) -> str | None:
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookies.get(name)
    return morsel.value if morsel is not None else None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
