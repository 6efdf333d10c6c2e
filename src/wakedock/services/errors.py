"""Errors of the services feature, each with the HTTP status a user can act on."""

from __future__ import annotations

from wakedock.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from wakedock.services.policy import Violation


class ServiceNotFound(NotFound):
    code = "service_not_found"


class ServiceExists(Conflict):
    code = "service_exists"


class NotServiceOwner(PermissionDenied):
    code = "not_service_owner"


class ConfiguredByLabels(Conflict):
    """A discovered service is configured by its container's `wakedock.*` labels, not the API."""

    code = "configured_by_labels"


class ServiceInUse(Conflict):
    code = "service_in_use"


class InvalidServiceSpec(InvalidInput):
    status_code = 422
    code = "invalid_spec"


class PolicyRefused(InvalidInput):
    """One 422 listing every policy violation of a spec (S6.3)."""

    status_code = 422
    code = "policy_violation"

    def __init__(self, found: list[Violation]) -> None:
        listed = [{"field": v.field, "rule": v.rule, "message": v.message} for v in found]
        super().__init__(
            f"the service spec is refused by the launch policy ({len(found)} violation"
            f"{'s' if len(found) != 1 else ''})",
            extra={"violations": listed},
        )
        self.violations = found
