"""MFA errors, each with the stable code a client can act on."""

from __future__ import annotations

from wakedock.errors import InvalidInput, NotAuthenticated, PermissionDenied


class MfaCodeRejected(InvalidInput):
    code = "mfa_code_invalid"


class MfaLoginRejected(NotAuthenticated):
    code = "mfa_code_invalid"


class EnrolmentRequired(PermissionDenied):
    code = "mfa_enrollment_required"


class StepUpRequired(PermissionDenied):
    code = "step_up_required"
