"""FastAPI dependencies shared by every router: components, request context, DB transaction."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.web.client_ip import client_ip

MAX_USER_AGENT = 512


# Pure dependencies are `async def`: a plain `def` would cost a worker-thread hop per request.


async def components(request: Request) -> Components:
    return components_of(request)


def components_of(request: Request) -> Components:
    found: Components = request.app.state.components
    return found


def request_ip(request: Request) -> str:
    """The client address, resolved once per request (see client_ip.py)."""
    cached: str | None = getattr(request.state, "client_ip", None)
    if cached is None:
        peer = request.client.host if request.client else None
        trusted = request.app.state.components.trusted_proxies
        cached = client_ip(peer, request.headers.getlist("x-forwarded-for"), trusted)
        request.state.client_ip = cached
    return cached


async def request_context(request: Request) -> RequestContext:
    return context_of(request)


def context_of(request: Request) -> RequestContext:
    """Who is asking, from where (the actor once authentication has run)."""
    principal = getattr(request.state, "principal", None)
    return RequestContext(
        ip=request_ip(request),
        user_agent=request.headers.get("user-agent", "")[:MAX_USER_AGENT],
        request_id=getattr(request.state, "request_id", None),
        actor=principal.username if principal is not None else None,
    )


def db_transaction(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    with components_of(request).db() as session, session.begin():
        yield session
