"""/api/v1/secrets: the services' secrets, for admins (docs/secrets.md)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.errors import PermissionDenied
from wakedock.rbac.dependencies import SensitiveCheckDep, requires
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.secrets.deps import SecretStoreDep, StepUpDep
from wakedock.secrets.schemas import SecretOut, SecretWrite, WrittenOut
from wakedock.web.deps import request_context
from wakedock.web.openapi import errors
from wakedock.zerotrust.base import Purpose

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"])


# 409 secrets_read_only: the configured provider (env, file) is not listed or written here.
@router.get(
    "",
    response_model=SecretOut,
    dependencies=[Depends(requires(Permission.SECRETS_READ))],
    responses=errors(409),
)
def list_root(
    store: SecretStoreDep, context: RequestContext = Depends(request_context)
) -> SecretOut:
    """The folders and secrets at the top of the services' secrets."""
    return SecretOut.model_validate(asdict(store.describe("", context)))


@router.get("/{path:path}", response_model=SecretOut, responses=errors(400, 409))
def read_secret(
    path: str,
    principal: Annotated[Principal, Depends(requires(Permission.SECRETS_READ))],
    store: SecretStoreDep,
    step_up: StepUpDep,
    check: SensitiveCheckDep,
    context: Annotated[RequestContext, Depends(request_context)],
    reveal: Annotated[bool, Query()] = False,
) -> SecretOut:
    """Key names and versions; the values only with `reveal=true` (secrets:reveal + step-up)."""
    info = SecretOut.model_validate(asdict(store.describe(path, context)))
    if not reveal:
        return info
    if not has_permission(principal.role, Permission.SECRETS_REVEAL):
        raise PermissionDenied("revealing a value needs the secrets:reveal permission")
    step_up.require_fresh(principal, context)
    check(principal, context, Purpose.REVEAL_SECRET)
    return info.model_copy(update={"values": store.reveal(path, context)})


@router.put("/{path:path}", response_model=WrittenOut, responses=errors(400, 409))
def write_secret(
    path: str,
    body: SecretWrite,
    _: Annotated[Principal, Depends(requires(Permission.SECRETS_WRITE))],
    store: SecretStoreDep,
    context: Annotated[RequestContext, Depends(request_context)],
) -> WrittenOut:
    """Write a new version of a secret (audited: key names and version, never values)."""
    version = store.write(path, body.values, context, cas=body.cas)
    return WrittenOut(path=path.strip("/"), version=version)
