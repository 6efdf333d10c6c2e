"""Walk the application's routes as FastAPI really serves them (included routers flattened)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from wakedock.rbac.dependencies import Requires, public


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Each served API route, with .path, .methods and the effective .dependant."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def guards(dependant: Dependant) -> list[object]:
    """The Requires guards and `public` markers anywhere in a route's dependency tree."""
    found: list[object] = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, Requires) or dep.call is public:
            found.append(dep.call)
        found += guards(dep)
    return found
