"""Domain errors. Each carries what the HTTP layer needs; web/errors.py maps them to JSON."""

from __future__ import annotations

from typing import Any


class WakeDockError(Exception):
    """Base of every error a client may see. `code` is stable; `detail` is safe to show."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidInput(WakeDockError):
    status_code = 400
    code = "invalid_input"


class NotAuthenticated(WakeDockError):
    status_code = 401
    code = "not_authenticated"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="wakedock"'}


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"


class PermissionDenied(WakeDockError):
    status_code = 403
    code = "permission_denied"


class CsrfFailed(PermissionDenied):
    code = "csrf_failed"


class NotFound(WakeDockError):
    status_code = 404
    code = "not_found"


class Conflict(WakeDockError):
    status_code = 409
    code = "conflict"


class TooManyAttempts(WakeDockError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(
        self, retry_after: int, detail: str = "Too many attempts, try again later"
    ) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class DependencyUnavailable(WakeDockError):
    """A component WakeDock relies on (rate-limit store, database) cannot be reached."""

    status_code = 503
    code = "dependency_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class DatabaseUnavailable(DependencyUnavailable):
    """The database, or the disk under it, cannot serve: requests needing it answer 503."""

    def __init__(self, detail: str, dependency: str = "database") -> None:
        super().__init__(detail, extra={"dependency": dependency})
