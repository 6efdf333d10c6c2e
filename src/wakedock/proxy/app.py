"""One request to a service host: authorize, wake (or show the loading page), then proxy it."""

from __future__ import annotations

import asyncio
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, quote

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import Message, Receive, Scope, Send

from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.errors import DependencyUnavailable, NotAuthenticated, TooManyAttempts
from wakedock.proxy import pages
from wakedock.proxy.access import ALLOW, FORBIDDEN, ProxyAccess, cookie_name
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.forward import forward_http, upstream_headers
from wakedock.proxy.upstream_io import UpstreamTransport
from wakedock.proxy.wake import WAKE_BY_IP, Endpoint, TooManyAwake, WakeCoordinator, WakeFailed
from wakedock.proxy.websocket import forward_websocket
from wakedock.services.views import ServiceView
from wakedock.web.client_ip import client_ip, is_trusted
from wakedock.web.headers import SecurityHeaders
from wakedock.web.redirects import local_path

_RETRY_SECONDS = "5"


class ProxyApp:
    def __init__(
        self,
        c: Components,
        coordinator: WakeCoordinator,
        activity: ActivityTracker,
        access: ProxyAccess,
        headers: SecurityHeaders,
    ) -> None:
        self._c = c
        # On WakeDock's own answers only (pages, redirects): a service's answers are its own.
        self._headers = headers
        self._wake = coordinator
        self._activity = activity
        self._access = access
        settings = c.settings.proxy
        self._client = httpx.AsyncClient(
            transport=UpstreamTransport(),
            trust_env=False,
            timeout=httpx.Timeout(settings.upstream_timeout_seconds, connect=5.0),
            follow_redirects=False,
        )
        self._admin_url = settings.admin_url or (
            f"https://{_url_host(settings.admin_hosts[0])}:{c.settings.server.port}"
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def handle(
        self, view: ServiceView, host: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        peer = scope["client"][0] if scope.get("client") else None
        forwarded = [
            v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"x-forwarded-for"
        ]
        ip = client_ip(peer, forwarded, self._c.trusted_proxies)
        context = RequestContext(ip=ip, user_agent=headers.get("user-agent", "")[:512])
        path: str = scope["path"]
        own = self._headers.wrap(scope, send, no_store=True)
        if scope["type"] == "http" and path.startswith(pages.PREFIX + "/"):
            response = await self._own_route(view, host, scope, headers, path)
            await response(scope, receive, own)
            return
        principal = None
        if view.spec.access.policy != "public":
            principal = await run_in_threadpool(
                self._access.principal, _cookie(headers, cookie_name(scope["scheme"])), host
            )
        decision = self._access.decide(view, principal)
        if decision != ALLOW:
            await self._refuse(decision, view, scope, headers, host)(scope, receive, own)
            return
        if principal is not None:
            context = RequestContext(ip=ip, user_agent=context.user_agent, actor=principal.username)
        with self._activity.connection(view.name):
            endpoint = self._wake.endpoint_now(view.name)
            if endpoint is None:
                outcome = await self._wait_for_wake(view, scope, headers, context)
                if isinstance(outcome, Response):
                    await outcome(scope, receive, own)
                    return
                endpoint = outcome
            trusted = peer is not None and is_trusted(peer, self._c.trusted_proxies)
            upstream = upstream_headers(
                scope,
                peer or ip,
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
                    base=f"http://{endpoint.host}:{endpoint.port}",
                    headers=upstream,
                )
                return
            except httpx.ConnectError:
                # Stopped behind WakeDock's back: wake it again (a body can be sent only once).
                self._wake.forget(view.name)
                if attempt == 2 or scope["method"] not in ("GET", "HEAD"):
                    break
                try:
                    endpoint = await self._wake.ensure_awake(view, context)
                except WakeFailed:
                    break
            except httpx.TransportError:
                if started:
                    raise  # mid-response: all a proxy can do is cut the connection
                break
        unavailable = pages.message_page(
            "Service unavailable", "The service did not answer. Try again.", 502
        )
        await unavailable(scope, receive, self._headers.wrap(scope, send, no_store=True))

    async def _wait_for_wake(
        self, view: ServiceView, scope: Scope, headers: dict[str, str], context: RequestContext
    ) -> Endpoint | Response:
        state = self._wake.state(view.name)
        try:
            task = state.task
            if task is None or task.done():
                await run_in_threadpool(self._c.limiter.check, WAKE_BY_IP, context.ip or "?")
                # Another request may have started the wake meanwhile: join it, at no cost.
                task = state.task
                if task is None or task.done():
                    task = self._wake.begin(view, context)
                    # Only a request that starts a wake spends the client's wake budget.
                    await run_in_threadpool(
                        self._c.limiter.record_failure, WAKE_BY_IP, context.ip or "?"
                    )
        except TooManyAttempts as exc:
            return pages.message_page(
                "Too many wake-ups",
                "This address woke services too often. Wait a little and try again.",
                429,
                {"Retry-After": str(exc.retry_after)},
            )
        except (TooManyAwake, DependencyUnavailable) as exc:
            return pages.message_page(
                "Server busy", exc.detail, 503, {"Retry-After": _RETRY_SECONDS}
            )
        name = view.spec.display_name or view.name
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and pages.wants_html(headers.get("accept", ""))
        ):
            return pages.loading_page(name)
        try:
            # The wake enforces wake_timeout itself; the margin lets its verdict arrive first.
            return await asyncio.wait_for(
                asyncio.shield(task), timeout=view.spec.wake_timeout_s + 1
            )
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

    def _refuse(
        self, decision: str, view: ServiceView, scope: Scope, headers: dict[str, str], host: str
    ) -> Response:
        if decision == FORBIDDEN:
            return pages.message_page("Forbidden", "Your role may not use this service.", 403)
        if scope["type"] == "http" and pages.wants_html(headers.get("accept", "")):
            query = scope.get("query_string", b"").decode("latin-1")
            here = f"{scope['scheme']}://{headers.get('host', host)}{scope['path']}"
            here += f"?{query}" if query else ""
            return RedirectResponse(
                f"{self._admin_url}/auth/proxy?next={quote(here, safe='')}", status_code=303
            )
        return pages.message_page(
            "Sign-in required", "Sign in to WakeDock to use this service.", 401
        )

    async def _own_route(
        self, view: ServiceView, host: str, scope: Scope, headers: dict[str, str], path: str
    ) -> Response:
        asset = pages.asset(path)
        if asset is not None:
            return asset
        if path == pages.STATUS_PATH:
            return self._status(view)
        if path == f"{pages.PREFIX}/auth":
            return await self._redeem(host, scope)
        return pages.message_page("Not found", "No such page.", 404)

    def _status(self, view: ServiceView) -> Response:
        state = self._wake.state(view.name)
        if state.endpoint is not None:
            body: dict[str, object] = {"state": "ready", "progress": 100}
        elif state.phase == "failed":
            body = {
                "state": "failed",
                "message": "The service could not be started. Reload to try again.",
            }
        else:
            elapsed = time.monotonic() - (state.waking_since or time.monotonic())
            share = min(95, 5 + int(90 * elapsed / max(view.spec.wake_timeout_s, 1)))
            body = {"state": "waking" if state.phase == "waking" else "asleep", "progress": share}
        return JSONResponse(body, headers=pages.PAGE_HEADERS)

    async def _redeem(self, host: str, scope: Scope) -> Response:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ticket = (query.get("ticket") or [""])[0]
        target = local_path((query.get("next") or ["/"])[0])
        try:
            value = await run_in_threadpool(self._access.redeem_ticket, ticket, host)
        except NotAuthenticated as exc:
            return pages.message_page("Sign-in failed", exc.detail, 401)
        response = RedirectResponse(target, status_code=303)
        https = scope["scheme"] == "https"
        response.set_cookie(
            cookie_name(scope["scheme"]),
            value,
            max_age=self._c.settings.auth.session_absolute_seconds,
            path="/",
            secure=https,
            httponly=True,
            samesite="lax",
        )
        for key, header in pages.PAGE_HEADERS.items():
            response.headers[key] = header
        return response


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
