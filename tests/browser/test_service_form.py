"""The create / edit page in Chromium, as a developer uses it: sign in with a TOTP code, open
New service from the services page, fill the form, see the launch policy's refusal next to the
field it concerns (and the typed values kept), fix it, save, and find the service in the list
(its container created, stopped, in the real engine); then edit it. Keyboard reachable; axe-core
finds no serious or critical violation at 390 and 1440 px; zero CSP violations reported.

The real `wakedock serve` over HTTPS, the real Docker engine (the busybox test image, never
pulled), Debian's Chromium.
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
    browser_server,
    create_user,
    enrol_by_api,
    next_code,
    sign_in_with_code,
    text,
)
from support.docker_images import TEST_IMAGE
from support.engine import SERVE, container_of

from .test_dashboard import csp_violations, keyboard_path, metrics_token

pytestmark = pytest.mark.integration


def test_a_service_is_created_from_the_form_after_a_policy_refusal(
    tmp_path: Path,
    certificate: BrowserCertificate,
    engine: docker.DockerClient,
    installation: str,
    network: str,
    browser: Any,
    page: Any,
    shot: Shot,
) -> None:
    data = tmp_path / "data"
    env = {"WAKEDOCK_DOCKER__INSTALLATION": installation}
    developer = create_user(data, "dana", "developer")
    watcher = create_user(data, "mona", "operator")  # reads /metrics; never signs in a browser
    with browser_server(data, certificate, env) as server:
        token = metrics_token(server, "mona", watcher)
        secret, _codes = enrol_by_api(server, "dana", developer)
        page.goto(admin_url(server, "/services"))
        page.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_code(page, "dana", developer, next_code(secret))
        page.wait_for_url(admin_url(server, "/services"))

        # From the services page to the empty form.
        page.get_by_role("link", name="New service").click()
        page.get_by_role("heading", name="New service").wait_for()
        check_accessibility(page, shot, "new-service")
        assert keyboard_path(page, 9) == [
            "Skip to content", "WakeDock", "Services", "Account", "Sign out", "Prefer YAML?",
            "Name", "Display name", "Image",
        ]  # fmt: skip

        # Filled by a person, with a capability the launch policy refuses.
        page.get_by_label("Name", exact=True).fill("notes")
        page.get_by_label("Display name").fill("Team notes")
        page.get_by_label("Image").fill(TEST_IMAGE)
        page.get_by_label("Command", exact=True).fill(
            "\n".join(SERVE)
        )  # the busybox image has none
        page.get_by_label("Probe").select_option("tcp")
        page.get_by_label("Port", exact=True).fill("8080")
        page.get_by_label("Network mode").fill(network)
        page.get_by_label("Added capabilities").fill("SYS_ADMIN")
        page.get_by_role("button", name="Create service").click()
        page.get_by_role("alert").wait_for()
        capabilities = page.get_by_label("Added capabilities")
        problem = page.locator("#f-cap_add-error")
        assert problem.inner_text() == "line 1: this capability is not allowed"
        assert capabilities.get_attribute("aria-invalid") == "true"
        assert "f-cap_add-error" in (capabilities.get_attribute("aria-describedby") or "")
        assert "1 problem to fix, each shown beside its field" in text(page)
        assert page.get_by_label("Display name").input_value() == "Team notes"  # kept
        assert page.get_by_label("Command", exact=True).input_value() == "\n".join(SERVE)
        check_accessibility(page, shot, "policy-violation", dark=True)

        # Fixed and saved: back on the list, which says so; the container waits, stopped.
        capabilities.fill("")
        page.get_by_role("button", name="Create service").click()
        page.wait_for_url(admin_url(server, "/services?saved=notes"))
        assert page.get_by_role("status").inner_text() == "Service notes saved."
        assert page.locator('tr[data-service="notes"]').is_visible()
        created = container_of(engine, installation, "notes")
        assert created.status == "created" and created.attrs["Config"]["Image"] == TEST_IMAGE
        shot("saved")

        # Edit: the form shows the spec; a change is saved the same way.
        page.get_by_role("link", name="Edit notes").click()
        page.get_by_role("heading", name="Edit notes").wait_for()
        assert page.get_by_label("Name", exact=True).get_attribute("readonly") is not None
        assert page.get_by_label("Added capabilities").input_value() == ""
        check_accessibility(page, shot, "edit-service")
        page.get_by_label("Idle timeout (s)").fill("120")
        # The zero-trust network filter is for public services: said beside the box.
        network_filter = page.get_by_label("Network filter (policy: public)")
        network_filter.check()
        page.get_by_role("button", name="Save changes").click()
        page.get_by_role("alert").wait_for()
        assert page.locator("#f-access_network_filter-error").inner_text() == (
            "only for policy 'public': a protected service's visitors are always weighed"
        )
        shot("network-filter-refused")
        page.get_by_label("Who may wake and use it").select_option("public")
        page.get_by_role("button", name="Save changes").click()
        page.wait_for_url(admin_url(server, "/services?saved=notes"))
        page.get_by_role("link", name="Edit notes").click()
        page.get_by_role("heading", name="Edit notes").wait_for()
        assert (
            network_filter.is_checked()
            and page.get_by_label("Idle timeout (s)").input_value() == "120"
        )

        # Nothing the pages did was refused by their CSP.
        assert csp_violations(server, token) == 0
