"""What can be audited, and how serious each kind of event is."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class EventType(StrEnum):
    LOGIN_SUCCESS = "login_success"
    LOGIN_FAILURE = "login_failure"
    RATE_LIMIT_HIT = "rate_limit_hit"
    TOKEN_REFRESH = "token_refresh"  # noqa: S105 - a name, not a secret
    TOKEN_REUSE = "token_reuse"  # noqa: S105 - a name, not a secret
    LOGOUT = "logout"
    SESSION_REVOKE = "session_revoke"
    PASSWORD_CHANGE = "password_change"  # noqa: S105 - a name, not a secret
    USER_CREATE = "user_create"
    USER_UPDATE = "user_update"
    USER_DISABLE = "user_disable"
    USER_DELETE = "user_delete"
    ROLE_CHANGE = "role_change"
    REGISTRATION = "registration"
    SETUP_COMPLETE = "setup_complete"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    FORBIDDEN_ACCESS = "forbidden_access"
    CSRF_FAILURE = "csrf_failure"
    MFA_SUCCESS = "mfa_success"
    MFA_FAILURE = "mfa_failure"
    MFA_ENROL = "mfa_enrol"
    MFA_ENROL_START = "mfa_enrol_start"
    MFA_DISABLE = "mfa_disable"
    MFA_RESET = "mfa_reset"
    MFA_BACKUP_CODES_REGENERATED = "mfa_backup_codes_regenerated"
    MFA_STEP_UP = "mfa_step_up"
    PATH_TRAVERSAL = "path_traversal"
    FILE_WRITE = "file_write"
    SERVICE_CREATE = "service_create"
    SERVICE_UPDATE = "service_update"
    SERVICE_DELETE = "service_delete"
    SERVICE_START = "service_start"
    SERVICE_STOP = "service_stop"
    SERVICE_DISCOVERED = "service_discovered"
    SERVICE_MISSING = "service_missing"
    POLICY_VIOLATION = "policy_violation"
    POLICY_RELAXATION = "policy_relaxation"
    AUDIT_EXPORT = "audit_export"
    AUDIT_ARCHIVE = "audit_archive"
    # Someone ran the chain's check (admin console or CLI): its start, then its result.
    AUDIT_VERIFY = "audit_verify"
    # The seed plan's SecurityEventType, kept under its names.
    PRIVILEGE_ESCALATION = "privilege_escalation"
    DATA_ACCESS = "data_access"
    CONFIGURATION_CHANGE = "configuration_change"
    SUSPICIOUS_ACTIVITY = "suspicious_activity"
    API_ABUSE = "api_abuse"
    SECURITY_VIOLATION = "security_violation"
    SECRET_ACCESS = "secret_access"  # noqa: S105 - a name, not a secret
    SECRET_ROTATION = "secret_rotation"  # noqa: S105 - a name, not a secret
    SECRET_WRITE = "secret_write"  # noqa: S105 - a name, not a secret
    SECRET_REVEAL = "secret_reveal"  # noqa: S105 - a name, not a secret
    TLS_CERTIFICATE_EXPIRING = "tls_certificate_expiring"
    TLS_CERTIFICATE_RENEWED = "tls_certificate_renewed"
    # The edge (nginx + ModSecurity + OWASP CRS) refused a request or an answer.
    WAF_BLOCKED = "waf_blocked"
    # A browser refused to load or run something on an admin page (its CSP report).
    CSP_VIOLATION = "csp_violation"
    # A service's custom loading page could not be rendered: its visitors got the built-in one.
    LOADING_PAGE_FAILED = "loading_page_failed"
    # The alert pipeline raised an alert (before its delivery): one that waits shows.
    ALERT_RAISED = "alert_raised"
    # An alert reached every webhook: when, and how long after the event that raised it.
    ALERT_DELIVERED = "alert_delivered"
    # The zero-trust engine weighed an attempt: every step-up and deny, and every allow that
    # scored (docs/zerotrust.md); the details hold the score and each signal's part.
    ZERO_TRUST_DECISION = "zero_trust_decision"


DEFAULT_SEVERITY: dict[EventType, Severity] = {
    EventType.LOGIN_SUCCESS: Severity.INFO,
    EventType.LOGIN_FAILURE: Severity.LOW,
    EventType.RATE_LIMIT_HIT: Severity.MEDIUM,
    EventType.TOKEN_REFRESH: Severity.INFO,
    EventType.TOKEN_REUSE: Severity.HIGH,
    EventType.LOGOUT: Severity.INFO,
    EventType.SESSION_REVOKE: Severity.LOW,
    EventType.PASSWORD_CHANGE: Severity.MEDIUM,
    EventType.USER_CREATE: Severity.MEDIUM,
    EventType.USER_UPDATE: Severity.LOW,
    EventType.USER_DISABLE: Severity.MEDIUM,
    EventType.USER_DELETE: Severity.MEDIUM,
    EventType.ROLE_CHANGE: Severity.HIGH,
    EventType.REGISTRATION: Severity.LOW,
    EventType.SETUP_COMPLETE: Severity.HIGH,
    EventType.UNAUTHORIZED_ACCESS: Severity.LOW,
    EventType.FORBIDDEN_ACCESS: Severity.MEDIUM,
    EventType.CSRF_FAILURE: Severity.MEDIUM,
    EventType.MFA_SUCCESS: Severity.INFO,
    EventType.MFA_FAILURE: Severity.MEDIUM,
    EventType.MFA_ENROL: Severity.MEDIUM,
    EventType.MFA_ENROL_START: Severity.LOW,
    EventType.MFA_DISABLE: Severity.HIGH,
    EventType.MFA_RESET: Severity.HIGH,
    EventType.MFA_BACKUP_CODES_REGENERATED: Severity.MEDIUM,
    EventType.MFA_STEP_UP: Severity.INFO,
    EventType.PATH_TRAVERSAL: Severity.HIGH,
    EventType.FILE_WRITE: Severity.LOW,
    EventType.SERVICE_CREATE: Severity.LOW,
    EventType.SERVICE_UPDATE: Severity.LOW,
    EventType.SERVICE_DELETE: Severity.MEDIUM,
    EventType.SERVICE_START: Severity.INFO,
    EventType.SERVICE_STOP: Severity.INFO,
    EventType.SERVICE_DISCOVERED: Severity.LOW,
    EventType.SERVICE_MISSING: Severity.MEDIUM,
    # A refused dangerous spec is someone trying (or mistakenly asking) for host access.
    EventType.POLICY_VIOLATION: Severity.HIGH,
    EventType.POLICY_RELAXATION: Severity.HIGH,
    EventType.AUDIT_EXPORT: Severity.MEDIUM,
    EventType.AUDIT_ARCHIVE: Severity.HIGH,
    # A failed check is raised to critical (audit/checks.py): the trail was tampered with.
    EventType.AUDIT_VERIFY: Severity.INFO,
    EventType.PRIVILEGE_ESCALATION: Severity.CRITICAL,
    EventType.DATA_ACCESS: Severity.LOW,
    EventType.CONFIGURATION_CHANGE: Severity.HIGH,
    EventType.SUSPICIOUS_ACTIVITY: Severity.HIGH,
    EventType.API_ABUSE: Severity.MEDIUM,
    EventType.SECURITY_VIOLATION: Severity.HIGH,
    EventType.SECRET_ACCESS: Severity.MEDIUM,
    EventType.SECRET_ROTATION: Severity.MEDIUM,
    EventType.SECRET_WRITE: Severity.HIGH,
    # A person reading a secret's value back: rare, deliberate, and worth a look.
    EventType.SECRET_REVEAL: Severity.HIGH,
    # Raised to high at the last warning threshold and on expiry (health/certificate.py).
    EventType.TLS_CERTIFICATE_EXPIRING: Severity.MEDIUM,
    EventType.TLS_CERTIFICATE_RENEWED: Severity.LOW,
    # Someone sent what the CRS scores as an attack (or a false positive worth a narrow
    # exclusion): either way worth a look.
    EventType.WAF_BLOCKED: Severity.HIGH,
    # Mostly a browser extension or a page bug; a burst of them can be an injection attempt.
    EventType.CSP_VIOLATION: Severity.LOW,
    EventType.LOADING_PAGE_FAILED: Severity.LOW,
    # Info: an alert already went out for what raised it; this one is its receipt (MTTD).
    EventType.ALERT_DELIVERED: Severity.INFO,
    # Info likewise: the alert itself goes to the webhooks (and the event that raised it is high).
    EventType.ALERT_RAISED: Severity.INFO,
    EventType.ZERO_TRUST_DECISION: Severity.LOW,
}


@dataclass(frozen=True)
class Event:
    type: EventType
    outcome: Outcome = Outcome.SUCCESS
    target: str | None = None
    severity: Severity | None = None
    details: dict[str, Any] = field(default_factory=dict)
