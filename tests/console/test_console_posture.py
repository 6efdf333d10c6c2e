"""`/admin/posture` in process: the KPIs follow what happens (an enrolment, failed sign-ins, an
alert held back then delivered by a real loopback webhook, the secrets backend, the served
certificate), and only admins may read them."""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import code_step, events, hidden, page_client, password_step, with_mfa
from support.proxy import add_service
from support.webhook import Webhook, webhook_receiver
from wakedock.audit.models import AuditEvent
from wakedock.rbac.permissions import Role
from wakedock.server.tls import generate_self_signed
from wakedock.siem.exporter import SinkStatus

from .conftest import SignIn

POSTURE = "/admin/posture"
# The webhook's path and query are its credentials, as a Slack URL's are: never shown.
HOOK_SECRET = secrets.token_urlsafe(18)
HOOK_TOKEN = secrets.token_hex(12)
WHEN = "%Y-%m-%d %H:%M:%S UTC"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with webhook_receiver(f"/services/T0WAKE/B0DOCK/{HOOK_SECRET}?token={HOOK_TOKEN}") as hook:
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


def text(page: str, element_id: str) -> str:
    """The text of the element with this id, tags stripped."""
    found = re.search(rf'<(\w+) id="{element_id}">(.*?)</\1>', page, re.S)
    assert found, f"no element {element_id}"
    return re.sub(r"<[^>]+>", "", found[2])


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 30  # functional: the poll is 0.1 s, the first retry 1 s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def alert_pipeline(h: Harness) -> SinkStatus:
    [status] = [s for s in h.components.siem.status() if s.name == "alerts"]
    return status


def raise_token_reuse(h: Harness) -> AuditEvent:
    """A refresh token spent twice: the second is reuse (high severity), which alerts."""
    name, password = h.create_user("holder", Role.VIEWER)
    refresh = h.login(name, password)["refresh_token"]
    assert h.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 200
    assert h.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    [reuse] = events(h, "token_reuse")
    return reuse


def posture_as_admin(h: Harness) -> str:
    """The page as an admin of a harness of the test's own reads it (signed in with MFA)."""
    name, password = with_mfa(h, "admin-own", Role.ADMIN)
    browser = page_client(h, 50990)
    challenge = hidden(password_step(browser, name, password, POSTURE).text, "challenge")
    assert code_step(browser, challenge, h.totp_code(name), POSTURE).status_code == 303
    page = browser.get(POSTURE)
    assert page.status_code == 200, page.text
    return page.text


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
    assert "No alert raised in the last 7 days." in admin.get(POSTURE).text
    start_delivery()
    reuse = raise_token_reuse(h)
    wait_for(lambda: events(h, "alert_delivered"), "the alert's delivery")
    assert [a["rule"] for a in webhook.received] == ["severity:token_reuse"]
    [receipt] = events(h, "alert_delivered")
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


def test_an_alert_a_refusing_webhook_holds_back_is_listed_failing_then_delivered(
    signed_in: SignIn, h: Harness, start_delivery: Callable[[], None], webhook: Webhook
) -> None:
    admin = signed_in(Role.ADMIN).browser
    webhook.status = 503
    start_delivery()
    reuse = raise_token_reuse(h)
    wait_for(lambda: webhook.refused and alert_pipeline(h).failures, "the webhook's refusal")

    page = admin.get(POSTURE).text
    raised, alert, severity, state, delivered, waiting = row(page, "alert-1")
    assert raised == reuse.occurred_at.strftime(WHEN)
    assert (alert, severity) == ("HIGH: token_reuse (severity:token_reuse)", "high")
    assert state == "failed, retrying (last error: alert webhook 127.0.0.1: HTTP 503)"
    assert delivered == "not yet"
    assert re.fullmatch(r"waiting for [0-9.]+ s", waiting), waiting
    # Not measured: no MTTD yet, and the page says what it leaves out.
    assert "MTTD): <strong>—</strong>" in page
    assert "Not delivered yet, and not in the median: 1 of the 1 alerts raised." in page
    # The webhook URL's secret path and token are nowhere, nor its path at all.
    assert HOOK_SECRET not in page and HOOK_TOKEN not in page and "/services/T0WAKE" not in page
    assert not events(h, "alert_delivered") and not webhook.received

    webhook.status = 204
    wait_for(lambda: events(h, "alert_delivered"), "the delivery once the webhook accepts")
    [receipt] = events(h, "alert_delivered")
    page = admin.get(POSTURE).text
    assert len(re.findall(r'<tr id="alert-', page)) == 1  # the same alert, now delivered
    raised, alert, _, state, delivered, measured = row(page, "alert-1")
    assert (raised, state) == (reuse.occurred_at.strftime(WHEN), "delivered")
    assert delivered == receipt.occurred_at.strftime(WHEN)
    delay = (receipt.occurred_at - reuse.occurred_at).total_seconds()
    shown = re.fullmatch(r"([0-9.]+) s (on target|late)", measured)
    assert shown and abs(float(shown[1]) - delay) < 0.1, measured
    assert delay > 0.5  # it waited for at least one retry
    assert f"<strong>{float(shown[1]):.1f} s</strong>" in page
    assert "Not delivered yet" not in page
    assert [a["rule"] for a in webhook.received] == ["severity:token_reuse"]


def test_the_secrets_backend_is_named_with_its_state(
    signed_in: SignIn, h: Harness, make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    page = signed_in(Role.ADMIN).browser.get(POSTURE).text
    directory = h.components.settings.secrets.directory
    assert text(page, "secrets-state") == f"file:{directory}, health: ok"

    # Vault unreachable at start-up, with a fallback allowed: secrets come from the directory
    # meanwhile, and the backend is degraded.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once closed
    vault = make_harness(
        data_dir=tmp_path / "vault-data",
        database={"url": f"sqlite:///{tmp_path / 'vault.db'}"},
        secrets={"provider": "vault", "vault_url": f"http://127.0.0.1:{closed}",
                 "vault_token": "posture-test", "vault_fallback": "file",
                 "directory": tmp_path / "fallback"},
    )  # fmt: skip
    degraded = posture_as_admin(vault)
    backend = f"vault:http://127.0.0.1:{closed} (fallback file:{tmp_path / 'fallback'})"
    assert text(degraded, "secrets-state") == f"{backend}, health: degraded"


def test_the_served_certificate_shows_its_expiry_and_days_left(
    signed_in: SignIn, h: Harness, tmp_path: Path
) -> None:
    admin = signed_in(Role.ADMIN).browser
    assert text(admin.get(POSTURE).text, "certificate") == (
        "not served by WakeDock (plain HTTP, or TLS ended in front of it)"
    )
    # 20 and a half days left: within the 30-day warning, clear of the last (14 days).
    not_after = (datetime.now(UTC) + timedelta(days=20, hours=12)).replace(microsecond=0)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(
        cert, key, "posture.wakedock.test", now=not_after - timedelta(days=90),
        valid_for=timedelta(days=90),
    )  # fmt: skip
    h.components.certificate.observe(cert.read_bytes())
    shown = text(admin.get(POSTURE).text, "certificate")
    assert shown == f"posture.wakedock.test, expires {not_after:%Y-%m-%d} (20 days left) warning"


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
