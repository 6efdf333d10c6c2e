"""MFA errors, each with the stable code a client can act on."""

from __future__ import annotations

from wakedock.errors import InvalidInput, NotAuthenticated, PermissionDenied


class MfaCodeRejected(InvalidInput):
    code = "mfa_code_invalid"


class MfaLoginRejected(NotAuthenticated):
    code = "mfa_code_invalid"


class StepUpRequired(PermissionDenied):
    code = "step_up_required"
