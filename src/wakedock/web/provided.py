"""The collaborators the app factory provides, found by type (the composition root fills it).

A feature never reaches into a bag of every component: its `deps.py` names the one
collaborator a handler needs, as an `Annotated[..., Depends(provider(T))]` alias, and the
handler's signature says what it uses. A test swaps one collaborator with `Provided.add`,
or overrides one dependency, instead of building everything (Warehouse's
`request.find_service(IUserService)` is the model).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection

T = TypeVar("T")


class NotProvided(LookupError):
    """A handler asked for a collaborator nobody wired: a programming error, never user input."""


class Provided:
    """One instance per type. Keys are the types handlers ask for (a class, or a Protocol)."""

    def __init__(self) -> None:
        self._by_type: dict[type[Any], object] = {}

    def add(self, kind: type[T], instance: T) -> None:
        """Provide `instance` to whoever asks for `kind` (replacing an earlier one)."""
        self._by_type[kind] = instance

    def get(self, kind: type[T]) -> T:
        try:
            return cast(T, self._by_type[kind])
        except KeyError:
            raise NotProvided(
                f"nothing provides {kind.__name__}: wire it in the app factory"
            ) from None

    def __contains__(self, kind: type[Any]) -> bool:
        return kind in self._by_type


def provided_of(connection: HTTPConnection) -> Provided:
    """The registry of the application serving this request or WebSocket."""
    found: Provided = connection.app.state.provided
    return found


def provider(kind: type[T]) -> Callable[[HTTPConnection], Awaitable[T]]:
    """A FastAPI dependency answering the provided `kind`.

    `async`: a plain function would cost a worker-thread hop per request. Call it once per type,
    at import time in the feature's `deps.py`, so that FastAPI caches it per request and a test
    can override it by identity.
    """

    async def provide(connection: HTTPConnection) -> T:
        return provided_of(connection).get(kind)

    provide.__name__ = f"provide_{kind.__name__}"
    provide.__qualname__ = provide.__name__
    return provide
