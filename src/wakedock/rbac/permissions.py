"""Every permission WakeDock knows, named `resource:action`."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class Permission(StrEnum):
    # One's own account: profile, password, own sessions. Every role has these.
    ACCOUNT_READ = "account:read"
    ACCOUNT_WRITE = "account:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    SESSIONS_READ = "sessions:read"
    SESSIONS_REVOKE = "sessions:revoke"
    SERVICES_READ = "services:read"
    SERVICES_WRITE = "services:write"
    SERVICES_OPERATE = "services:operate"
    # Service files (compose, env, loading pages) under files/<service>/: developers only those
    # of services they own (an object-level check), operators and admins all.
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"
    AUDIT_READ = "audit:read"
    SECRETS_READ = "secrets:read"
    SECRETS_WRITE = "secrets:write"
    SECRETS_REVEAL = "secrets:reveal"
    SETTINGS_READ = "settings:read"
    SETTINGS_WRITE = "settings:write"
    METRICS_READ = "metrics:read"
    # Security posture figures (MFA adoption, ...).
    SECURITY_READ = "security:read"
    # The admin console's pages (/admin): admins only. Each page also needs the permission the
    # API demands for what it shows or changes; the API itself does not ask for this one.
    CONSOLE_READ = "console:read"
