"""A protected service reached from Chromium: sign in on the admin host, watch the loading page,
get the app. The real `wakedock serve`, the real Docker engine, a real container.

Chromium opens `https://app.localhost:<port>/` (resolved to 127.0.0.1 inside Chromium); the
container runs on the test's own bridge network and publishes its port on 127.0.0.1 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from support.axe import check_accessibility
from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    as_another_browser,
    browser_server,
    create_user,
    csp_reports,
    enrol_by_api,
    enrol_on_the_page,
    next_code,
    sign_in_with_code,
    sign_in_with_password,
    site_url,
    text,
)
from support.engine import AddApp

pytestmark = pytest.mark.integration


def running(engine: docker.DockerClient, installation: str) -> bool:
    return any(
        c.status == "running"
        for c in engine.containers.list(
            all=True, filters={"label": f"wakedock.managed={installation}"}
        )
    )


@pytest.mark.parametrize("who", ["viewer", "admin", "new-admin"])
def test_a_protected_service_through_sign_in_and_the_loading_page(
    tmp_path: Path,
    certificate: BrowserCertificate,
    engine: docker.DockerClient,
    installation: str,
    add_app: AddApp,
    page: Any,
    shot: Shot,
    who: str,
) -> None:
    """A viewer signs in with a password; an admin also gives its code; a new admin (no MFA
    yet: this looped between the hosts before) enrols on the way, then reaches the app."""
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    add_app(
        data,
        env,
        "app",
        # Slow to listen, so that a person (and this test) sees the loading page.
        {"NAME": "the team wiki", "DELAY": "3"},
        display_name="Team wiki",
        access={"policy": "authenticated"},
        idle_timeout_s=600,
    )
    password = create_user(data, "gina", "viewer" if who == "viewer" else "admin")
    with browser_server(data, certificate, env) as server:
        secret = enrol_by_api(server, "gina", password)[0] if who == "admin" else None
        service = site_url(server, "app.localhost")
        page.goto(service)

        # Not signed in: the service host sent the browser to the admin host's sign-in form.
        page.get_by_role("heading", name="Sign in").wait_for()
        assert page.url.startswith(admin_url(server, "/login?next="))
        assert not running(engine, installation)
        shot("sign-in")
        if secret is None:
            sign_in_with_password(page, "gina", password)
        else:
            sign_in_with_code(page, "gina", password, next_code(secret))
        if who == "new-admin":
            page.get_by_role("heading", name="Set up two-step verification").wait_for()
            assert "Your role (admin) must use two-step verification" in text(page)
            assert not running(engine, installation)
            shot("enrolment-required")
            enrol_on_the_page(page, shot)

        page.get_by_role("heading", name="Starting Team wiki").wait_for()
        assert page.url == service
        assert "reloads by itself when it is ready" in text(page)
        shot("loading-page")

        page.get_by_text("hello from the team wiki").wait_for(timeout=60_000)
        assert page.url == service
        assert running(engine, installation)
        shot("the-app")


@pytest.mark.security
def test_a_session_used_from_another_browser_gives_a_code_before_the_service_wakes(
    tmp_path: Path,
    certificate: BrowserCertificate,
    engine: docker.DockerClient,
    installation: str,
    add_app: AddApp,
    page: Any,
    shot: Shot,
) -> None:
    """Zero trust on a service host (docs/zerotrust.md, "On service hosts"): the session
    signed in with Chromium; the same cookie from a browser the user never used (Firefox's
    user agent, 20 points) is asked for a fresh code before the service wakes, by a `wake`
    profile that steps up at 15. A wrong code is refused; a backup code lets it in."""
    data = tmp_path / "data"
    env = {
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_ZEROTRUST__PROFILES": '{"wake": {"step_up_at": 15}}',
    }
    add_app(data, env, "app", {"NAME": "the team wiki"}, display_name="Team wiki",
            access={"policy": "authenticated"}, idle_timeout_s=600)  # fmt: skip
    password = create_user(data, "gina", "viewer")
    refused_by_csp = csp_reports(page)
    with browser_server(data, certificate, env) as server:
        secret, backup_codes = enrol_by_api(server, "gina", password)
        page.goto(admin_url(server, "/login"))
        sign_in_with_code(page, "gina", password, next_code(secret))
        page.get_by_role("heading", name="Services").wait_for()
        # The same session, now with another browser's user agent.
        as_another_browser(page)
        service = site_url(server, "app.localhost")
        page.goto(service)
        page.get_by_role("heading", name="Confirm it is you").wait_for()
        assert page.url.startswith(admin_url(server, "/auth/proxy?next="))
        assert "app.localhost" in text(page)
        assert not running(engine, installation)
        check_accessibility(page, shot, "fresh-code-asked")
        page.get_by_label("Authentication code").fill("000000")
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("alert").wait_for()
        assert "That code was not accepted" in text(page)
        assert not running(engine, installation)
        shot("wrong-code")
        page.get_by_label("Authentication code").fill(backup_codes[0])
        page.get_by_role("button", name="Continue").click()
        page.get_by_text("hello from the team wiki").wait_for(timeout=60_000)
        assert page.url == service
        assert running(engine, installation)
        shot("the-app")
    assert refused_by_csp == []


@pytest.mark.security
def test_a_visit_the_wake_profile_denies_sees_the_refusal_and_nothing_wakes(
    tmp_path: Path,
    certificate: BrowserCertificate,
    engine: docker.DockerClient,
    installation: str,
    add_app: AddApp,
    page: Any,
    shot: Shot,
) -> None:
    """The same session from a browser the user never used, with a `wake` profile that denies
    at 15: WakeDock's refusal page on the service host, with its reference and no reason, and
    the service stays asleep."""
    data = tmp_path / "data"
    env = {
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_ZEROTRUST__PROFILES": '{"wake": {"step_up_at": 15, "deny_at": 15}}',
    }
    add_app(data, env, "app", {"NAME": "the team wiki"}, display_name="Team wiki",
            access={"policy": "authenticated"}, idle_timeout_s=600)  # fmt: skip
    password = create_user(data, "ines", "viewer")
    refused_by_csp = csp_reports(page)
    with browser_server(data, certificate, env) as server:
        page.goto(admin_url(server, "/login"))
        sign_in_with_password(page, "ines", password)
        page.get_by_role("heading", name="Services").wait_for()
        as_another_browser(page)
        service = site_url(server, "app.localhost")
        page.goto(service)
        page.get_by_role("heading", name="Access refused").wait_for()
        assert page.url == service
        shown = text(page)
        assert "The access policy refused this visit" in shown and "Reference: " in shown
        assert "new_browser" not in shown and "browser" not in shown.lower()
        assert not running(engine, installation)
        check_accessibility(page, shot, "visit-refused")
    assert refused_by_csp == []
