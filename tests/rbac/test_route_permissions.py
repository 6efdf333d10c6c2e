"""Every route declares a permission or is explicitly public; the role table is what we mean."""

from __future__ import annotations

from itertools import pairwise

from conftest import Harness
from support.routes import api_routes, guards
from wakedock.rbac.dependencies import Requires, public
from wakedock.rbac.permissions import Permission, Role
from wakedock.rbac.roles import ROLE_PERMISSIONS, has_permission, permissions_of

# Public on purpose, and why.
EXPECTED_PUBLIC = {
    ("GET", "/api/v1/health"),  # readiness: component states, nothing sensitive
    ("GET", "/api/v1/health/live"),  # liveness probe
    ("GET", "/"),  # landing page, no data
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),  # the refresh token is the credential
    ("POST", "/api/v1/auth/register"),  # off unless enabled; viewer role only
    ("POST", "/api/v1/auth/setup"),  # needs the one-time setup token
    ("POST", "/api/v1/auth/mfa/verify"),  # the MFA challenge token is the credential
    ("GET", "/login"),  # the browser sign-in form
    ("POST", "/login"),  # the credentials are the credential (same origin only)
    ("POST", "/login/code"),  # the MFA challenge token is the credential (same origin only)
    ("GET", "/assets/wakedock.css"),  # the pages' stylesheet
    # The enrolment pages read the session cookie themselves (no session: sent to /login) and
    # their posts need the session's CSRF token and this server's origin.
    ("GET", "/mfa/enrol"),
    ("POST", "/mfa/enrol"),
    ("POST", "/mfa/enrol/confirm"),
    ("GET", "/auth/proxy"),  # hands a live session's ticket to a known service host only
    # The code a service host's step-up asks for: the session's CSRF token and this origin.
    ("POST", "/auth/proxy"),
    # A page's zero-trust step-up: the code form reads the session cookie itself (no session:
    # sent to /login); its post needs the session's CSRF token and this server's origin.
    ("GET", "/mfa/step-up"),
    ("POST", "/mfa/step-up"),
    # The dashboard pages read the session cookie themselves (no session: sent to /login, or
    # 401 for the script's poll), then ask the API's own guard (`requires(P)`) for the
    # permission; their posts need the session's CSRF token and this server's origin.
    ("GET", "/services"),
    ("GET", "/services/live"),
    ("POST", "/services/{name}/{action}"),
    # The create / edit form the same way: services:write and ownership checked by the page.
    ("GET", "/services/new"),
    ("POST", "/services/new"),
    ("GET", "/services/{name}/edit"),
    ("POST", "/services/{name}/edit"),
    ("POST", "/logout"),
    ("GET", "/assets/wakedock.js"),  # the pages' script
    # A service's page, its refreshed part and its log tail, the same way (the log tail asks
    # the guard for services:operate, then the API's ownership rule).
    ("GET", "/services/{name}"),
    ("GET", "/services/{name}/live"),
    ("GET", "/services/{name}/logs"),
    ("GET", "/assets/service-detail.js"),  # that page's script
    # A service's loading page, previewed: the session read by the page, then services:read.
    ("GET", "/services/{name}/loading-preview"),
    ("GET", "/assets/loading.css"),  # the loading pages' stylesheets, for the preview
    ("GET", "/assets/loading-dark.css"),
    ("POST", "/csp-report"),  # browsers report without a session: rate-limited, size-limited
    # The Account page, the same way: the session cookie read by the page (no session: sent to
    # /login), then account:read / account:write checked; posts need CSRF and this origin.
    ("GET", "/account"),
    ("POST", "/account/sessions/revoke"),
    ("POST", "/account/sessions/revoke-others"),
    ("POST", "/account/password"),
    ("POST", "/account/mfa/backup-codes"),
    ("POST", "/account/mfa/disable"),
    # The admin console, the same way: the session read by the page, then console:read and
    # the page's own API permission asked of the guard (docs/console.md); posts need CSRF.
    ("GET", "/admin"),
    # Users and roles: console:read, users:read (users:write for the forms), the API's step-up.
    ("GET", "/admin/users"),
    ("POST", "/admin/users"),
    ("GET", "/admin/users/{name}"),
    ("POST", "/admin/users/{name}/{action}"),
    # The console's Sessions page: sessions:read to list, sessions:revoke to post.
    ("GET", "/admin/sessions"),
    ("POST", "/admin/sessions/revoke"),
    ("POST", "/admin/sessions/revoke-user"),
    # The console's Secrets page (secrets:read, :write, :reveal) and Settings page (settings:read).
    ("GET", "/admin/secrets"),
    ("POST", "/admin/secrets/write"),
    ("POST", "/admin/secrets/reveal"),
    ("GET", "/admin/settings"),
    # The security posture page: console:read and security:read, asked by the page.
    ("GET", "/admin/posture"),
    # The audit trail's page: console:read and audit:read (also for "verify now", which reads
    # the trail; the API has no verify route), its tail, chain part, export, detail, script.
    ("GET", "/admin/audit"),
    ("GET", "/admin/audit/live"),
    ("GET", "/admin/audit/chain"),
    ("POST", "/admin/audit/verify"),
    ("GET", "/admin/audit/export"),
    ("GET", "/admin/audit/{seq}"),
    ("GET", "/assets/console-audit.js"),
}


def test_every_route_declares_permission_or_public(harness: Harness) -> None:
    undeclared = []
    public_routes = set()
    for route in api_routes(harness.app):
        found = guards(route.dependant)
        for method in route.methods:
            if not found:
                undeclared.append(f"{method} {route.path}")
            if public in found:
                public_routes.add((method, route.path))
                # A route is public or guarded, never a confusing mix of both.
                assert not any(isinstance(g, Requires) for g in found), route.path
    assert undeclared == [], f"routes without a permission or `public`: {undeclared}"
    assert public_routes == EXPECTED_PUBLIC


def test_walk_detects_an_unguarded_route(harness: Harness) -> None:
    # The walk itself must be able to fail: add a bare route and see it reported.
    @harness.app.get("/api/v1/unguarded")
    def unguarded() -> dict[str, str]:
        return {}

    route = next(r for r in api_routes(harness.app) if r.path == "/api/v1/unguarded")
    assert guards(route.dependant) == []


def test_role_table() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert permissions_of("admin") == frozenset(Permission)
    assert permissions_of("no-such-role") == frozenset()
    for role in Role:
        assert has_permission(role, Permission.ACCOUNT_READ)
    # Beyond its own account, a viewer only reads.
    viewer = permissions_of("viewer") - {Permission.ACCOUNT_READ, Permission.ACCOUNT_WRITE}
    assert not any(p.value.endswith((":write", ":operate", ":revoke", ":reveal")) for p in viewer)
    assert not has_permission("developer", Permission.USERS_READ)
    assert not has_permission("operator", Permission.USERS_WRITE)
    assert not has_permission("operator", Permission.SECRETS_REVEAL)
    # Each lesser role's set is contained in the next one's.
    order = [Role.VIEWER, Role.DEVELOPER, Role.OPERATOR, Role.ADMIN]
    for lower, higher in pairwise(order):
        assert permissions_of(lower) <= permissions_of(higher)


def test_permissions_are_resource_action() -> None:
    for permission in Permission:
        resource, _, action = permission.value.partition(":")
        assert resource and action and resource.isalpha() and action.isalpha()
