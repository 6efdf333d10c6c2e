"""A protected service reached from Chromium: sign in on the admin host, watch the loading page,
get the app. The real `wakedock serve`, the real Docker engine, a real container.

Chromium opens `https://app.localhost:<port>/` (resolved to 127.0.0.1 inside Chromium); the
container runs on the test's own bridge network and publishes its port on 127.0.0.1 only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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
from support.server import WakeDockProcess

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


@contextmanager
def _visited_from_another_browser(
    tmp_path: Path,
    certificate: BrowserCertificate,
    installation: str,
    add_app: AddApp,
    page: Any,
    wake: dict[str, float],
    *,
    mfa: bool,
) -> Iterator[tuple[WakeDockProcess, str, list[str]]]:
    """Zero trust on a service host (docs/zerotrust.md, "On service hosts"): a viewer signs in
    with Chromium (with her code if `mfa`), then the same session's cookie is sent with the
    user agent of a browser she never used (Firefox, 20 points) to a sleeping protected service,
    under the `wake` profile's thresholds `wake`. Yields the server, the service's URL and her
    backup codes; no page may have been refused by its CSP."""
    data = tmp_path / "data"
    env = {
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_ZEROTRUST__PROFILES": json.dumps({"wake": wake}),
    }
    add_app(data, env, "app", {"NAME": "the team wiki"}, display_name="Team wiki",
            access={"policy": "authenticated"}, idle_timeout_s=600)  # fmt: skip
    password = create_user(data, "gina", "viewer")
    refused_by_csp = csp_reports(page)
    with browser_server(data, certificate, env) as server:
        backup_codes: list[str] = []
        page.goto(admin_url(server, "/login"))
        if mfa:
            secret, backup_codes = enrol_by_api(server, "gina", password)
            sign_in_with_code(page, "gina", password, next_code(secret))
        else:
            sign_in_with_password(page, "gina", password)
        page.get_by_role("heading", name="Services").wait_for()
        as_another_browser(page)
        service = site_url(server, "app.localhost")
        page.goto(service)
        yield server, service, backup_codes
    assert refused_by_csp == []


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
    """A `wake` profile stepping up at 15: the code page on the admin host before the service
    wakes; a wrong code is refused, a backup code reaches the app."""
    with _visited_from_another_browser(
        tmp_path, certificate, installation, add_app, page, {"step_up_at": 15}, mfa=True
    ) as (server, service, backup_codes):
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


@pytest.mark.security
def test_without_a_second_factor_the_step_up_is_explained_and_nothing_wakes(
    tmp_path: Path,
    certificate: BrowserCertificate,
    engine: docker.DockerClient,
    installation: str,
    add_app: AddApp,
    page: Any,
    shot: Shot,
) -> None:
    """The same step-up for an account with no authenticator: no code page to loop through,
    the service host says what is needed (with the reference), and the service stays asleep."""
    with _visited_from_another_browser(
        tmp_path, certificate, installation, add_app, page, {"step_up_at": 15}, mfa=False
    ) as (_server, service, _codes):
        page.get_by_role("heading", name="Verification needed").wait_for()
        assert page.url == service
        shown = text(page)
        assert "your account has none" in shown and "Reference: " in shown
        assert not running(engine, installation)
        check_accessibility(page, shot, "no-second-factor")


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
    """A `wake` profile denying at 15: WakeDock's refusal page on the service host, with its
    reference and no reason, and the service stays asleep."""
    deny = {"step_up_at": 15, "deny_at": 15}
    with _visited_from_another_browser(
        tmp_path, certificate, installation, add_app, page, deny, mfa=False
    ) as (_server, service, _codes):
        page.get_by_role("heading", name="Access refused").wait_for()
        assert page.url == service
        shown = text(page)
        assert "The access policy refused this visit" in shown and "Reference: " in shown
        assert "new_browser" not in shown and "browser" not in shown.lower()
        assert not running(engine, installation)
        check_accessibility(page, shot, "visit-refused")
