"""The OpenAPI description (served at /api/openapi.json when `http.docs_enabled`) says what the
server really answers: one error shape, and the statuses each route can give.

Routes declare the errors of their own logic (`responses=errors(409)`); the ones that follow
from how a route is built are added here for every route alike: 401 and 403 wherever a
permission guard runs, 404 for an id in the path, 400 (undecodable) and 413 (too large) for a
request body, 422 (in the shape web/errors.py really sends) for any parameter, 503 everywhere
(a database, rate-limit store, engine or secrets backend that cannot be reached).
tests/web/test_openapi.py runs schemathesis over the whole API to hold the description to the
answers.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict

REF = "#/components/schemas/ErrorOut"


class ValidationIssue(BaseModel):
    """One invalid value of a 422: where it is and what is wrong (never the value itself)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error answer. `code` is stable; `detail` is safe to show (for a 422 validation
    error, the list of issues). Some errors carry more: `reasons` of a refused password,
    `violations` of a refused service spec, `field`, the `correlation_id` of a 500."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[ValidationIssue]
    code: str


DESCRIPTIONS = {
    400: "Invalid input",
    401: "Not authenticated: no credentials, or expired, revoked or wrong ones",
    403: "Refused: a missing permission, MFA enrolment or step-up needed, or a CSRF check failed",
    404: "No such object (or one the caller may not see)",
    409: "Conflicts with the current state",
    413: "Request body too large",
    422: "Invalid request: each issue names the field; the value is never repeated",
    429: "Too many attempts; `Retry-After` says when to try again",
    502: "The Docker engine refused or failed the operation",
    503: "A dependency (database, rate-limit store, Docker engine, secrets backend) is "
    "unavailable; `Retry-After` says when to try again",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer realm", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these error statuses, each in the one error shape (JSON, even
    on a route that answers plain text or a file when it succeeds)."""
    return {status: _error_response(status) for status in statuses}


# The key of `openapi_extra` that body_shaped_as() sets and complete() replaces.
_SHAPED = "x-wakedock-body-shape"
_TEMPLATE = "#/components/schemas/{model}"
# The models named by body_shaped_as(), by name (FastAPI's document holds JSON only).
_SHAPES: dict[str, type[BaseModel]] = {}


def body_shaped_as(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` for a route that validates its JSON body itself (to answer its own
    error code) but whose body has the shape of `model`: the document shows `model`."""
    _SHAPES[model.__name__] = model
    return {_SHAPED: model.__name__}


def _add_model(components: dict[str, Any], model: type[BaseModel]) -> str:
    generated = model.model_json_schema(ref_template=_TEMPLATE)
    for name, schema in generated.pop("$defs", {}).items():
        components.setdefault(name, schema)
    components.setdefault(model.__name__, generated)
    return _TEMPLATE.format(model=model.__name__)


def _described(status: int, answer: dict[str, Any]) -> dict[str, Any]:
    answer["description"] = DESCRIPTIONS[status]
    if status in _HEADERS:
        answer["headers"] = _HEADERS[status]
    return answer


def _error_response(status: int) -> dict[str, Any]:
    return _described(status, {"content": {"application/json": {"schema": {"$ref": REF}}}})


@runtime_checkable
class PermissionGuard(Protocol):
    """A dependency that admits only holders of a permission (rbac's `requires(...)`), known by
    its shape: the description only needs to know that one runs, not how it decides."""

    permission: str  # rbac's Permission (a StrEnum)


def _guarded(dependant: Dependant) -> bool:
    return any(isinstance(d.call, PermissionGuard) or _guarded(d) for d in dependant.dependencies)


def _has_body(dependant: Dependant) -> bool:
    return bool(dependant.body_params) or any(_has_body(d) for d in dependant.dependencies)


def _implied(route: Any) -> set[int]:
    """The statuses that follow from how a route is built."""
    implied = {503}
    if _guarded(route.dependant):
        implied |= {401, 403}
    if "{" in route.path_format:
        implied.add(404)
    if _has_body(route.dependant):
        implied |= {400, 413}  # 400: a body that cannot even be decoded
    return implied


def complete(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, FastAPI's document of `app`, completed as the module docstring says."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _add_model(components, ErrorOut)
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in context.methods or ():
            operation = schema["paths"][context.path_format][method.lower()]
            shape = operation.pop(_SHAPED, None)
            if shape is not None:
                body = operation["requestBody"]["content"]["application/json"]
                body["schema"] = {"$ref": _add_model(components, _SHAPES[shape])}
            answers = operation["responses"]
            for status in _implied(context):
                answers.setdefault(str(status), _error_response(status))
            if "422" in answers:  # FastAPI's default shape is not what web/errors.py sends
                answers["422"] = _error_response(422)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document. FastAPI builds (and caches) its own; it is completed once
    each time FastAPI builds it anew (after routes were added)."""
    generate = app.openapi
    completed: list[int] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        if completed != [id(schema)]:
            completed[:] = [id(complete(app, schema))]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
