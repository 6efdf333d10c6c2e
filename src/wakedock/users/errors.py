"""Account-opening errors with their stable codes (the shared ones live in wakedock.errors)."""

from __future__ import annotations

from wakedock.errors import WakeDockError


class RegistrationDisabled(WakeDockError):
    status_code = 403
    code = "registration_disabled"


class SetupUnavailable(WakeDockError):
    status_code = 403
    code = "setup_unavailable"
