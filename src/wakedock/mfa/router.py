"""/api/v1/auth/mfa (enrolment, step-up, disable, backup codes), the admin MFA reset and the
adoption figures. The login's code step (/api/v1/auth/mfa/verify) is the login flow's."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.mfa.deps import MfaServiceDep
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
)
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.web.deps import db_transaction, request_context
from wakedock.web.openapi import errors
from wakedock.web.params import RowId

router = APIRouter(prefix="/api/v1/auth/mfa", tags=["mfa"])
admin_router = APIRouter(tags=["mfa"])

_ENROLLING_READ = requires(Permission.ACCOUNT_READ, during_enrolment=True)
_ENROLLING_WRITE = requires(Permission.ACCOUNT_WRITE, during_enrolment=True)


@router.get("", response_model=StatusOut)
def status(
    mfa: MfaServiceDep,
    principal: Principal = Depends(_ENROLLING_READ),
    db: Session = Depends(db_transaction),
) -> StatusOut:
    found = mfa.status(db, principal.user_id)
    return StatusOut(
        enabled=found.enabled,
        required=found.required,
        enabled_at=found.enabled_at,
        backup_codes_remaining=found.backup_codes_remaining,
    )


@router.post("/setup", response_model=EnrolmentOut, responses=errors(409))
def setup(
    mfa: MfaServiceDep,
    principal: Principal = Depends(_ENROLLING_WRITE),
    context: RequestContext = Depends(request_context),
) -> EnrolmentOut:
    """Start enrolment: a new secret, its otpauth URI and QR code (inactive until confirmed)."""
    enrolment = mfa.begin_enrolment(principal, context)
    return EnrolmentOut(
        secret=enrolment.secret,
        otpauth_uri=enrolment.otpauth_uri,
        qr_png_base64=enrolment.qr_png_base64,
    )


@router.post("/confirm", response_model=BackupCodesOut, responses=errors(400, 409, 429))
def confirm(
    body: CodeRequest,
    mfa: MfaServiceDep,
    principal: Principal = Depends(_ENROLLING_WRITE),
    context: RequestContext = Depends(request_context),
) -> BackupCodesOut:
    """Activate MFA with a first code. The ten backup codes are shown this once."""
    return BackupCodesOut(backup_codes=mfa.confirm_enrolment(principal, body.code, context))


@router.post("/step-up", response_model=StepUpOut, responses=errors(400, 429))
def step_up(
    body: CodeRequest,
    mfa: MfaServiceDep,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE, step_up=True)),
    context: RequestContext = Depends(request_context),
) -> StepUpOut:
    """Prove MFA again; sensitive actions accept the proof for `mfa.step_up_seconds`."""
    proof = mfa.step_up(principal, body.code, context)
    return StepUpOut(mfa_at=proof.at, valid_for_seconds=proof.valid_for_seconds)


@router.post("/disable", status_code=204, responses=errors(400, 409, 429))
def disable(
    body: DisableRequest,
    mfa: MfaServiceDep,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Turn MFA off (not allowed for roles where it is mandatory): password + current code."""
    mfa.disable(principal, body.password, body.code, context)
    return Response(status_code=204)


@router.post("/backup-codes", response_model=BackupCodesOut, responses=errors(400, 409, 429))
def regenerate_backup_codes(
    body: CodeRequest,
    mfa: MfaServiceDep,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    context: RequestContext = Depends(request_context),
) -> BackupCodesOut:
    """Ten new backup codes (a current TOTP code is required); the old set stops working."""
    return BackupCodesOut(backup_codes=mfa.regenerate_backup_codes(principal, body.code, context))


@admin_router.delete("/api/v1/users/{user_id}/mfa", status_code=204, responses=errors(409))
def reset_user_mfa(
    user_id: RowId,
    mfa: MfaServiceDep,
    principal: Principal = Depends(requires(Permission.USERS_WRITE)),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> Response:
    """An admin clears a user's MFA (lost device); the user's sessions are revoked."""
    mfa.require_fresh(principal, context)
    mfa.reset(db, context, user_id)
    return Response(status_code=204)


@admin_router.get(
    "/api/v1/admin/security/mfa",
    response_model=AdoptionOut,
    dependencies=[Depends(requires(Permission.SECURITY_READ))],
)
def adoption(db: Session = Depends(db_transaction)) -> AdoptionOut:
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
