"""Route-guard refusals with their stable codes (the shared ones live in wakedock.errors)."""

from __future__ import annotations

from wakedock.errors import PermissionDenied


class EnrolmentRequired(PermissionDenied):
    """The caller's role must use MFA and the account has not enrolled yet."""

    code = "mfa_enrollment_required"
