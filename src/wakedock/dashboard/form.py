"""The create / edit pages of a service: `/services/new` and `/services/{name}/edit`.

A form of the spec's fields and, for power users, the same spec as YAML. A post is judged as
the API judges `POST /api/v1/services` and `PATCH /api/v1/services/{id}`, by the same calls
(`ServiceManager.create` and `update`: `services:write`, ownership, the launch policy, the
image present on the engine, the same audit events); every problem found comes back at once,
beside the control it concerns, with what was typed kept (and escaped). Saved: back to the
services page, which says so.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from wakedock.auth.forms import (
    CSRF_FIELD,
    BrowserSession,
    refused_page,
    require_form_csrf,
)
from wakedock.context import RequestContext
from wakedock.dashboard.browser import Pages, PagesDep, permitted, signed_in
from wakedock.dashboard.spec_form import (
    ACCESS_POLICIES,
    LOADING_THEMES,
    PROBE_TYPES,
    ROLES,
    STOP_METHODS,
    YAML,
    Arranged,
    FormValues,
    Problems,
    add_refusal,
    add_validation,
    add_violations,
    arrange,
    judged_apart,
    new_values,
    parse_yaml,
    values_of,
    yaml_of,
)
from wakedock.errors import CsrfFailed, InvalidInput, WakeDockError
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.runtime.base import ImageMissing
from wakedock.services.deps import service_manager
from wakedock.services.errors import ConfiguredByLabels
from wakedock.services.patch import ServicePatch
from wakedock.services.service import DISCOVERED, ServiceManager
from wakedock.services.snapshots import Actor, ServiceView
from wakedock.services.spec import ServiceSpec
from wakedock.web.deps import context_of
from wakedock.web.templating import message_page, render_page

router = APIRouter(tags=["pages"], include_in_schema=False)
NEW_PATH = "/services/new"
SERVICES_PATH = "/services"
# The form has about 35 controls (and a role checkbox each); more is not this form.
_MAX_FIELDS = 64
_NOT_ALLOWED = "Your role may not create or change services."
_Services = Depends(service_manager)


def edit_path(name: str) -> str:
    return f"{SERVICES_PATH}/{quote(name, safe='')}/edit"


async def _form_values(request: Request) -> FormValues:
    """The posted controls (the body is limited by http.max_body_bytes while read); the role
    checkboxes stay a list, any other control its last value."""
    try:
        parsed = parse_qs(
            (await request.body()).decode(), keep_blank_values=True, max_num_fields=_MAX_FIELDS
        )
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the form could not be parsed") from None
    return {key: values if key == "access_roles" else values[-1] for key, values in parsed.items()}


def _form_page(
    pages: Pages,
    session: BrowserSession,
    *,
    editing: ServiceView | None,
    values: FormValues,
    yaml_text: str,
    problems: Problems | None = None,
    mode: str = "fields",
    status: int = 200,
) -> HTMLResponse:
    found = problems.by_control if problems else {}
    return render_page(
        "service_form.html",
        status,
        title=f"Edit {editing.name}" if editing else "New service",
        section="services",
        user=session.principal.username,
        console=has_permission(session.principal.role, Permission.CONSOLE_READ),
        csrf_token=session.csrf_token(pages.csrf),
        editing=editing.name if editing else "",
        action=edit_path(editing.name) if editing else NEW_PATH,
        values=values,
        yaml_text=yaml_text,
        problems=found,
        count=sum(len(listed) for listed in found.values()),
        mode=mode,
        probe_types=PROBE_TYPES,
        access_policies=ACCESS_POLICIES,
        stop_methods=STOP_METHODS,
        loading_themes=LOADING_THEMES,
        roles=ROLES,
    )


def _editable(services: ServiceManager, actor: Actor, name: str) -> ServiceView:
    """The service `actor` may change (404, 403 not theirs, 409 configured by labels)."""
    view = services.get(name)
    services.check_manages(actor, view.id)
    if view.source == DISCOVERED:
        raise ConfiguredByLabels("this service is configured by its container's labels")
    return view


async def _allowed(request: Request, pages: Pages, here: str) -> BrowserSession | Response:
    """The signed-in session holding `services:write`, or the page to show instead."""
    found = await signed_in(request, pages, here)
    if isinstance(found, Response):
        return found
    if not await permitted(request, pages, found.principal, Permission.SERVICES_WRITE):
        return message_page("Services", _NOT_ALLOWED, 403, link=SERVICES_PATH, link_text="Back")
    return found


def _refused(exc: WakeDockError) -> HTMLResponse:
    return message_page("Services", exc.detail, exc.status_code, link=SERVICES_PATH,
                        link_text="Back to the services")  # fmt: skip


@router.get(NEW_PATH, response_class=HTMLResponse, dependencies=[Depends(public)])
async def new_service_page(request: Request, pages: Pages = PagesDep) -> Response:
    """The empty form (`services:write`)."""
    found = await _allowed(request, pages, NEW_PATH)
    if isinstance(found, Response):
        return found
    return _form_page(pages, found, editing=None, values=new_values(), yaml_text="")


@router.get(f"{SERVICES_PATH}/{{name}}/edit", response_class=HTMLResponse,
            dependencies=[Depends(public)])  # fmt: skip
async def edit_service_page(
    request: Request,
    name: str = Path(max_length=64),
    pages: Pages = PagesDep,
    services: ServiceManager = _Services,
) -> Response:
    """The form showing the service's spec (`services:write` and ownership, as the API's
    PATCH)."""
    found = await _allowed(request, pages, edit_path(name))
    if isinstance(found, Response):
        return found
    try:
        view = await run_in_threadpool(_editable, services, Actor.of(found.principal), name)
    except WakeDockError as exc:
        return _refused(exc)
    return _form_page(
        pages, found, editing=view, values=values_of(view.spec), yaml_text=yaml_of(view.spec)
    )


@router.post(NEW_PATH, dependencies=[Depends(public)])
async def create_from_form(
    request: Request, pages: Pages = PagesDep, services: ServiceManager = _Services
) -> Response:
    """Create the service (as `POST /api/v1/services`), or the form again with every problem."""
    return await _submit(request, pages, services, None)


@router.post(f"{SERVICES_PATH}/{{name}}/edit", dependencies=[Depends(public)])
async def update_from_form(
    request: Request,
    name: str = Path(max_length=64),
    pages: Pages = PagesDep,
    services: ServiceManager = _Services,
) -> Response:
    """Change the service (as `PATCH /api/v1/services/{id}` with every field), or the form
    again with every problem."""
    return await _submit(request, pages, services, name)


async def _submit(
    request: Request, pages: Pages, services: ServiceManager, name: str | None
) -> Response:
    values = await _form_values(request)
    here = edit_path(name) if name is not None else NEW_PATH
    session = await signed_in(request, pages, here)
    if not isinstance(session, BrowserSession):
        return session
    context = context_of(request)
    token = values.get(CSRF_FIELD, "")
    try:
        await require_form_csrf(
            request,
            pages.csrf,
            context,
            session,
            {CSRF_FIELD: token if isinstance(token, str) else ""},
        )
    except CsrfFailed:
        return refused_page()
    if not await permitted(request, pages, session.principal, Permission.SERVICES_WRITE):
        return message_page("Services", _NOT_ALLOWED, 403, link=SERVICES_PATH, link_text="Back")
    actor = Actor.of(session.principal)
    current: ServiceView | None = None
    if name is not None:
        try:
            current = await run_in_threadpool(_editable, services, actor, name)
        except WakeDockError as exc:
            return _refused(exc)
    mode = YAML if values.get("mode") == YAML else "fields"
    problems = Problems()
    arranged: Arranged | None = None
    if mode == YAML:
        yaml_text = str(values.get(YAML, ""))
        data = parse_yaml(yaml_text, problems)
        if data is not None and current is not None:
            data.setdefault("name", current.name)
    else:
        arranged = arrange(values, problems)
        data = arranged.data
        if current is not None:
            data["name"] = data.get("name", current.name)
    granted = current.writable_root_granted if current else False
    spec = await run_in_threadpool(_judged, services, actor, data, arranged, problems, granted)
    if spec is not None and not problems:
        try:
            saved = await run_in_threadpool(_save, services, actor, spec, current, context)
        except WakeDockError as exc:
            add_refusal(exc, arranged, problems)
            status = exc.status_code
        else:
            return RedirectResponse(f"{SERVICES_PATH}?saved={quote(saved.name)}", 303)
    else:
        status = 422
    kept = values if mode != YAML else (values_of(current.spec) if current else new_values())
    return _form_page(
        pages,
        session,
        editing=current,
        values=kept,
        yaml_text=str(values.get(YAML, "")),
        problems=problems,
        mode=mode,
        status=status,
    )


def _judged(
    services: ServiceManager,
    actor: Actor,
    data: dict[str, Any] | None,
    arranged: Arranged | None,
    problems: Problems,
    granted: bool,
) -> ServiceSpec | None:
    """The valid spec, or None; either way every validation error and every policy violation
    found is added to `problems` (the policy judging what validated, when something did not)."""
    if data is None:
        return None
    spec: ServiceSpec | None = None
    judged: ServiceSpec | None
    try:
        judged = spec = ServiceSpec.model_validate(data)
    except ValidationError as exc:
        add_validation(exc, arranged, problems)
        judged = judged_apart(data, exc)
    if judged is None or (spec is not None and not problems):
        return spec  # a valid spec is judged by the save itself, as the API's
    # Something is to be fixed already: the policy's word and the engine's on the rest, too.
    found = services.policy_violations(actor, judged, already_granted=granted)
    add_violations(found, arranged, problems)
    if judged.image == data.get("image"):  # not a stand-in
        with suppress(WakeDockError):  # the engine unreachable: the save will say so
            if not services.image_present(judged.image):
                add_refusal(ImageMissing(), arranged, problems)
    return spec


def _save(
    services: ServiceManager,
    actor: Actor,
    spec: ServiceSpec,
    current: ServiceView | None,
    context: RequestContext,
) -> ServiceView:
    """The API's create, or its update with every field (what the form shows is the whole
    spec: a field emptied goes back to its default)."""
    if current is None:
        return services.create(actor, spec, context, owner_id=actor.user_id)
    patch = ServicePatch.parse(spec.model_dump(mode="json"))
    return services.update(actor, current.id, patch, context)
