"""Walk the application's routes as FastAPI really serves them (included routers flattened)."""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

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


def _is_integer(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _is_integer(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return any(_is_integer(arg) for arg in get_args(annotation))
    return annotation is int


def integer_params(dependant: Dependant) -> list[tuple[str, str]]:
    """(where, name) of every integer path or query parameter in a route's dependency tree."""
    found: list[tuple[str, str]] = []
    for where, fields in (("path", dependant.path_params), ("query", dependant.query_params)):
        found += [(where, f.alias) for f in fields if _is_integer(f.field_info.annotation)]
    for dep in dependant.dependencies:
        found += [p for p in integer_params(dep) if p not in found]
    return found
