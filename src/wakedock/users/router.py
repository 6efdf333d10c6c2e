"""/api/v1/users: administration of accounts."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session

from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.mfa.deps import MfaServiceDep
from wakedock.rbac.dependencies import SensitiveCheckDep, requires
from wakedock.rbac.permissions import Permission, Role
from wakedock.users.deps import UserServiceDep
from wakedock.users.schemas import UserCreate, UserOut, UserUpdate
from wakedock.web.deps import db_transaction, request_context
from wakedock.web.openapi import errors
from wakedock.web.params import Offset, RowId
from wakedock.zerotrust.base import Purpose

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get(
    "", response_model=list[UserOut], dependencies=[Depends(requires(Permission.USERS_READ))]
)
def list_users(
    users: UserServiceDep,
    search: str | None = Query(default=None, max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$"),
    limit: int = Query(default=100, ge=1, le=500),
    offset: Offset = 0,
    db: Session = Depends(db_transaction),
) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in users.search(db, search, limit, offset)]


@router.post("", response_model=UserOut, status_code=201, responses=errors(400, 409))
def create_user(
    body: UserCreate,
    users: UserServiceDep,
    mfa: MfaServiceDep,
    check: SensitiveCheckDep,
    principal: Principal = Depends(requires(Permission.USERS_WRITE)),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> UserOut:
    """Create an account. Creating an admin is a grant of power: it needs a fresh MFA proof."""
    if body.role is Role.ADMIN:
        mfa.require_fresh(principal, context)
        check(principal, context, Purpose.GRANT_ROLE)
    user = users.create(
        db,
        context,
        username=body.username,
        password=body.password,
        role=body.role,
        email=body.email,
    )
    return UserOut.model_validate(user)


@router.get(
    "/{user_id}", response_model=UserOut, dependencies=[Depends(requires(Permission.USERS_READ))]
)
def get_user(
    user_id: RowId, users: UserServiceDep, db: Session = Depends(db_transaction)
) -> UserOut:
    return UserOut.model_validate(users.get(db, user_id))


@router.patch("/{user_id}", response_model=UserOut, responses=errors(400, 409))
def update_user(
    user_id: RowId,
    body: UserUpdate,
    users: UserServiceDep,
    mfa: MfaServiceDep,
    check: SensitiveCheckDep,
    principal: Principal = Depends(requires(Permission.USERS_WRITE)),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> UserOut:
    """Change role, email, disabled or password. Disabling revokes the user's sessions.

    Role changes, disabling and password resets need a fresh MFA proof (step-up).
    """
    if body.role is not None or body.disabled is not None or body.password is not None:
        mfa.require_fresh(principal, context)
    if body.role is not None:
        check(principal, context, Purpose.GRANT_ROLE)
    user = users.get(db, user_id)
    users.update(
        db,
        context,
        user,
        role=body.role,
        email=body.email,
        disabled=body.disabled,
        password=body.password,
    )
    return UserOut.model_validate(user)


@router.delete("/{user_id}", status_code=204, responses=errors(409))
def delete_user(
    user_id: RowId,
    users: UserServiceDep,
    mfa: MfaServiceDep,
    principal: Principal = Depends(requires(Permission.USERS_WRITE)),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Delete an account (needs a fresh MFA proof); its sessions end with it."""
    mfa.require_fresh(principal, context)
    users.delete(db, context, users.get(db, user_id), actor_id=principal.user_id)
    return Response(status_code=204)
