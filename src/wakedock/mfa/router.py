"""/api/v1/auth/mfa (enrolment, verify, step-up, disable, backup codes), the admin MFA reset
and the adoption figures."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session

from wakedock.auth.responses import refuse_cross_site_cookie_login, session_response
from wakedock.auth.schemas import CookieLoginResponse, TokenResponse
from wakedock.auth.sessions import Principal
from wakedock.auth.slots import run_hashing
from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.mfa.reporting import adoption_by_role
from wakedock.mfa.schemas import (
    AdoptionOut,
    BackupCodesOut,
    CodeRequest,
    DisableRequest,
    EnrolmentOut,
    RoleAdoption,
    StatusOut,
    StepUpOut,
    VerifyRequest,
)
from wakedock.rbac.dependencies import public, requires
from wakedock.rbac.permissions import Permission
from wakedock.web.deps import components, db_transaction, request_context
from wakedock.web.openapi import errors
from wakedock.web.params import RowId

router = APIRouter(prefix="/api/v1/auth/mfa", tags=["mfa"])
admin_router = APIRouter(tags=["mfa"])

_ENROLLING_READ = requires(Permission.ACCOUNT_READ, during_enrolment=True)
_ENROLLING_WRITE = requires(Permission.ACCOUNT_WRITE, during_enrolment=True)


@router.get("", response_model=StatusOut)
def status(
    principal: Principal = Depends(_ENROLLING_READ),
    c: Components = Depends(components),
    db: Session = Depends(db_transaction),
) -> StatusOut:
    found = c.mfa.status(db, principal.user_id)
    return StatusOut(
        enabled=found.enabled,
        required=found.required,
        enabled_at=found.enabled_at,
        backup_codes_remaining=found.backup_codes_remaining,
    )


@router.post("/setup", response_model=EnrolmentOut, responses=errors(409))
def setup(
    principal: Principal = Depends(_ENROLLING_WRITE),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> EnrolmentOut:
    """Start enrolment: a new secret, its otpauth URI and QR code (inactive until confirmed)."""
    enrolment = c.mfa.begin_enrolment(principal, context)
    return EnrolmentOut(
        secret=enrolment.secret,
        otpauth_uri=enrolment.otpauth_uri,
        qr_png_base64=enrolment.qr_png_base64,
    )


@router.post("/confirm", response_model=BackupCodesOut, responses=errors(400, 409, 429))
def confirm(
    body: CodeRequest,
    principal: Principal = Depends(_ENROLLING_WRITE),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> BackupCodesOut:
    """Activate MFA with a first code. The ten backup codes are shown this once."""
    return BackupCodesOut(backup_codes=c.mfa.confirm_enrolment(principal, body.code, context))


@router.post(
    "/verify",
    response_model=TokenResponse | CookieLoginResponse,
    dependencies=[Depends(public)],
    responses=errors(401, 403, 429),
)
async def verify(
    body: VerifyRequest,
    request: Request,
    response: Response,
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> TokenResponse | CookieLoginResponse:
    """Second login step: the challenge token and a TOTP or backup code open the session."""
    if body.mode == "cookie":
        await refuse_cross_site_cookie_login(request, c, context)
    tokens = await run_hashing(
        request, c.auth.complete_mfa, body.challenge_token, body.code, context
    )
    return session_response(c, response, tokens, body.mode)


@router.post("/step-up", response_model=StepUpOut, responses=errors(400, 429))
def step_up(
    body: CodeRequest,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> StepUpOut:
    """Prove MFA again; sensitive actions accept the proof for `mfa.step_up_seconds`."""
    at = c.mfa.step_up(principal, body.code, context)
    return StepUpOut(mfa_at=at, valid_for_seconds=c.settings.mfa.step_up_seconds)


@router.post("/disable", status_code=204, responses=errors(400, 409, 429))
def disable(
    body: DisableRequest,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Turn MFA off (not allowed for roles where it is mandatory): password + current code."""
    c.mfa.disable(principal, body.password, body.code, context)
    return Response(status_code=204)


@router.post("/backup-codes", response_model=BackupCodesOut, responses=errors(400, 409, 429))
def regenerate_backup_codes(
    body: CodeRequest,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> BackupCodesOut:
    """Ten new backup codes (a current TOTP code is required); the old set stops working."""
    return BackupCodesOut(backup_codes=c.mfa.regenerate_backup_codes(principal, body.code, context))


@admin_router.delete("/api/v1/users/{user_id}/mfa", status_code=204, responses=errors(409))
def reset_user_mfa(
    user_id: RowId,
    principal: Principal = Depends(requires(Permission.USERS_WRITE)),
    c: Components = Depends(components),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> Response:
    """An admin clears a user's MFA (lost device); the user's sessions are revoked."""
    c.mfa.require_fresh(principal, context)
    c.mfa.reset(db, context, c.users.get(db, user_id))
    return Response(status_code=204)


@admin_router.get(
    "/api/v1/admin/security/mfa",
    response_model=AdoptionOut,
    dependencies=[Depends(requires(Permission.SECURITY_READ))],
)
def adoption(
    c: Components = Depends(components), db: Session = Depends(db_transaction)
) -> AdoptionOut:
    """MFA adoption by role: the seed's KPI is 100% of admins and more than 80% of users."""
    by_role = {
        role: RoleAdoption(users=f.users, enrolled=f.enrolled, percent=f.percent)
        for role, f in adoption_by_role(db).items()
    }
    return AdoptionOut(
        by_role=by_role,
        total_users=sum(r.users for r in by_role.values()),
        total_enrolled=sum(r.enrolled for r in by_role.values()),
    )
