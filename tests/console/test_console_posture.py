"""`/admin/posture` in process: the KPIs follow what happens (an enrolment, failed sign-ins, an
alert delivered to a real loopback webhook), and only admins may read them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import events, page_client, password_step
from support.proxy import add_service
from support.webhook import Webhook, webhook_receiver
from wakedock.rbac.permissions import Role

from .conftest import SignIn

POSTURE = "/admin/posture"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with webhook_receiver() as hook:
        yield hook


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime, webhook: Webhook) -> Harness:
    """The console's harness with an alert webhook and a quick delivery poll."""
    harness = make_harness(
        runtime=runtime,
        alerts={"webhooks": [webhook.url], "allowed_networks": ["127.0.0.1/32"]},
        siem={"poll_seconds": 0.1},
    )
    add_service(harness, "app", display_name="Team wiki")
    return harness


@pytest.fixture
def start_delivery(h: Harness) -> Iterator[Callable[[], None]]:
    """Starts the SIEM and alert delivery workers, as `wakedock serve` runs them (alerts
    are raised only by events recorded after the start); stopped after the test."""
    started: list[bool] = []

    def start() -> None:
        h.components.siem.start()
        started.append(True)

    yield start
    if started:
        h.components.siem.stop()


def row(page: str, row_id: str) -> list[str]:
    """The cells of one table row, tags stripped."""
    found = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page, re.S)
    assert found, f"no row {row_id}"
    return [
        re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", found[1])
    ]


def summary(page: str, key: str) -> str:
    found = re.search(rf'<p class="summary" id="chart-{key}-summary">(.*?)</p>', page, re.S)
    assert found, f"no chart {key}"
    return found[1]


def test_mfa_adoption_changes_when_a_user_enrols(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN).browser
    name, password = h.create_user("reader", Role.VIEWER)
    before = admin.get(POSTURE)
    assert before.status_code == 200, before.text
    assert before.headers["cache-control"] == "no-store"
    assert row(before.text, "mfa-viewer") == ["viewer", "0 of 1", "0.0%", "over 80%", "no"]
    assert row(before.text, "mfa-admin")[1:] == ["1 of 1", "100.0%", "100%", "yes"]

    token = h.login(name, password, enrol=False)["access_token"]
    h.enrol_mfa(name, token)

    after = admin.get(POSTURE).text
    assert row(after, "mfa-viewer") == ["viewer", "1 of 1", "100.0%", "over 80%", "yes"]
    assert row(after, "mfa-all-users-but-admins")[1:3] == ["1 of 1", "100.0%"]
    # No developer account: nothing to measure, no verdict.
    assert row(after, "mfa-developer")[1:] == ["0 of 0", "—", "over 80%", "none"]


def test_failed_sign_ins_are_counted_in_the_chart(signed_in: SignIn, h: Harness) -> None:
    admin = signed_in(Role.ADMIN).browser
    assert summary(admin.get(POSTURE).text, "failed") == "No failed sign-ins in the last 24 hours."
    name, _ = h.create_user("victim", Role.VIEWER)
    stranger = page_client(h, 50900)
    for _ in range(3):
        refused = password_step(stranger, name, "not-the-password-at-all", "/services")
        assert refused.status_code != 303
    assert len(events(h, "login_failure")) == 3
    page = admin.get(POSTURE).text
    assert summary(page, "failed") == (
        "3 failed sign-ins in the last 24 hours, at most 3 in one hour."
    )
    # The hour's bar says so when hovered.
    assert re.search(r"<title>[0-9-]+ [0-9]{2}:00 UTC: 3 failed sign-ins</title>", page)


def test_an_alert_and_its_delivery_time_are_shown(
    signed_in: SignIn, h: Harness, start_delivery: Callable[[], None], webhook: Webhook
) -> None:
    admin = signed_in(Role.ADMIN).browser
    assert "No alert delivered in the last 7 days." in admin.get(POSTURE).text
    start_delivery()
    name, password = h.create_user("holder", Role.VIEWER)
    refresh = h.login(name, password)["refresh_token"]
    # A refresh token spent twice: the second is reuse (high severity), which alerts.
    assert h.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 200
    assert h.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    deadline = time.monotonic() + 30  # functional: the poll is 0.1 s
    while time.monotonic() < deadline and not events(h, "alert_delivered"):
        time.sleep(0.05)
    assert [a["rule"] for a in webhook.received] == ["severity:token_reuse"]
    [receipt] = events(h, "alert_delivered")
    [reuse] = events(h, "token_reuse")
    details = json.loads(receipt.details)
    assert details["event_ids"] == [f"wakedock-{reuse.seq}"]

    page = admin.get(POSTURE).text
    alerts = re.search(r'<table class="posture-table" id="alerts">(.*?)</table>', page, re.S)
    assert alerts, page
    assert "HIGH: token_reuse" in alerts[1] and "severity:token_reuse" in alerts[1]
    delay = (receipt.occurred_at - reuse.occurred_at).total_seconds()
    shown = re.search(r"<td>([0-9.]+) s <span", alerts[1])
    assert shown and abs(float(shown[1]) - delay) < 0.1
    assert f"<strong>{float(shown[1]):.1f} s</strong>" in page  # the median of one alert
    assert "on target" in alerts[1]
    sinks = re.search(r'<table class="posture-table" id="sinks">(.*?)</table>', page, re.S)
    assert sinks and "<td>alerts</td>" in sinks[1]


def test_the_page_shows_each_containers_cis_results_read_briefly_cached(
    signed_in: SignIn, h: Harness, runtime: FakeRuntime
) -> None:
    admin = signed_in(Role.ADMIN).browser
    page = admin.get(POSTURE).text
    app = re.search(r'<tr><td><a href="/services/app">app</a></td>(.*?)</tr>', page, re.S)
    assert app, page
    assert '<span class="badge" data-value="fail">FAIL</span>' in app[1]
    assert "5.4 Linux kernel capabilities are restricted" in app[1]
    assert "0 passing, 1 failing" in page
    # A second load within the cache period does not ask the engine again: with the engine
    # gone, it still shows what was read.
    runtime.down = True
    again = admin.get(POSTURE).text
    assert "5.4 Linux kernel capabilities are restricted" in again
    assert "not readable" not in again


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.DEVELOPER, Role.VIEWER])
def test_other_roles_get_the_403_page(signed_in: SignIn, h: Harness, role: Role) -> None:
    refused = signed_in(role).browser.get(POSTURE)
    assert refused.status_code == 403
    assert "Only administrators may open the admin console." in refused.text
    assert "MFA adoption" not in refused.text


def test_without_a_session_the_page_sends_to_sign_in_then_back(h: Harness) -> None:
    answer = page_client(h, 50950).get(POSTURE)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")
    assert "next=%2Fadmin%2Fposture" in answer.headers["location"]
