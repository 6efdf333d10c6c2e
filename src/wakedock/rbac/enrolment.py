"""The port the route guards ask before admitting anyone: must this principal enrol MFA first?

Declared here, by its consumer; the MFA service answers it (wired by the app factory).
"""

from __future__ import annotations

from typing import Protocol

from wakedock.auth.sessions import Principal


class EnrolmentPolicy(Protocol):
    """Whether a principal must enrol MFA before anything else."""

    def enrolment_pending(self, principal: Principal) -> bool: ...
