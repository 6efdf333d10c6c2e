"""FastAPI dependencies shared by every router: the request context, the DB transaction.

A feature's own collaborators come from its deps.py (see web/provided.py), never from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from wakedock.context import RequestContext
from wakedock.web.client_ip import (
    TrustedProxies,
    client_headers,
    connection_context,
    is_trusted,
    peer_of,
)
from wakedock.web.provided import provided_of, provider

# Pure dependencies are `async def`: a plain `def` would cost a worker-thread hop per request.

session_factory = provider(sessionmaker)
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(session_factory)]


def _anonymous_context(request: Request) -> RequestContext:
    """The request's context before authentication, computed once per request."""
    cached: RequestContext | None = getattr(request.state, "anonymous_context", None)
    if cached is None:
        trusted = provided_of(request).get(TrustedProxies)
        cached = connection_context(request.scope, trusted)
        request.state.anonymous_context = cached
    return cached


def request_ip(request: Request) -> str:
    """The client address, resolved once per request (see client_ip.py)."""
    return _anonymous_context(request).ip or "unknown"


def request_headers(request: Request) -> dict[str, str]:
    """The headers the zero-trust engine weighs (web/client_ip.py, `client_headers`)."""
    trusted = provided_of(request).get(TrustedProxies)
    peer = peer_of(request.scope)
    proxied = peer is not None and is_trusted(peer, trusted.networks)
    return client_headers(request.scope["headers"], from_trusted_proxy=proxied)


async def request_context(request: Request) -> RequestContext:
    return context_of(request)


def context_of(request: Request) -> RequestContext:
    """Who is asking, from where (the actor once authentication has run)."""
    context = _anonymous_context(request)
    principal = getattr(request.state, "principal", None)
    return context.as_actor(principal.username) if principal is not None else context


def db_transaction(factory: SessionFactoryDep) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    with factory() as session, session.begin():
        yield session
