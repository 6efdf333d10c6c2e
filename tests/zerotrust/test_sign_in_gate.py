"""The gate wired into sign-in, in-process (the real server's tests are in
tests/integration/test_zerotrust_server.py): what a refused person sees on the API and on the
sign-in page, how an admin finds the reasons by the reference shown (the audit API's
`request_id` filter; the console's is in tests/console/test_console_audit.py), what /metrics
counts, and that `enabled: false` weighs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import CLIENT_IP, Harness
from support.pages import SAME_ORIGIN
from wakedock.app import create_asgi
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.web.client_ip import client_headers
from wakedock.zerotrust.models import SignInRecord

OFFICE = "198.51.100.7"
DENIED = {"zerotrust": {"deny_networks": [f"{CLIENT_IP}/32"]}}
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


def _from(h: Harness, address: str) -> TestClient:
    return TestClient(h.app, base_url="https://testserver", client=(address, 50100))


def test_a_denied_network_is_refused_with_a_reference_the_admin_looks_up(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(**DENIED)
    name, password = h.create_user("paula")
    refused = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "zero_trust_denied"
    assert body["reference"] == refused.headers["x-request-id"]
    assert body["detail"] == f"sign-in refused by the access policy (reference {body['reference']})"
    # Nothing in the answer says which signal counted.
    assert "network" not in body["detail"] and CLIENT_IP not in refused.text

    # The admin, from the office, finds why by the reference.
    office = _from(h, OFFICE)
    admin_name, admin_password = h.create_user("root", Role.ADMIN)
    h.client = office  # the harness signs the admin in from the office
    admin = h.bearer(str(h.login(admin_name, admin_password)["access_token"]))
    found = office.get("/api/v1/audit", params={"request_id": body["reference"]}, headers=admin)
    assert found.status_code == 200, found.text
    [event] = found.json()["events"]
    assert (event["type"], event["outcome"], event["ip"]) == (
        "zero_trust_decision", "denied", CLIENT_IP)  # fmt: skip
    assert event["details"]["decision"] == "deny"
    assert event["details"]["purpose"] == "sign_in"
    assert list(event["details"]["signals"]) == ["network"]
    assert event["details"]["reasons"] == ["network: the address is on the network deny list"]
    # Refused before the password: no failure counted against the user or the address.
    failures = office.get("/api/v1/audit", params={"type": "login_failure"}, headers=admin)
    assert failures.json()["events"] == []
    # /metrics counts the decision by purpose and outcome, and by signal.
    metrics = office.get("/metrics", headers=admin).text.splitlines()
    assert 'wakedock_zero_trust_decisions_total{purpose="sign_in",decision="deny"} 1' in metrics
    assert 'wakedock_zero_trust_signals_total{signal="network",decision="deny"} 1' in metrics


def test_the_sign_in_page_shows_the_refusal_and_its_reference(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(**DENIED)
    name, password = h.create_user("petra")
    browser = TestClient(h.app, base_url="https://testserver", client=(CLIENT_IP, 50101),
                         follow_redirects=False)  # fmt: skip
    page = browser.post(
        "/login", data={"username": name, "password": password, "next": "/"}, headers=SAME_ORIGIN
    )
    assert page.status_code == 403
    assert "sign-in refused by the access policy (reference " in page.text
    assert "__Host-wakedock_session" not in page.headers.get("set-cookie", "")


def test_a_scored_allow_is_audited_and_a_silent_one_is_not(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness()
    name, password = h.create_user("quinn")
    quiet = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert quiet.status_code == 200
    headless = h.client.post(
        "/api/v1/auth/login",
        json={"username": name, "password": password},
        headers={"User-Agent": HEADLESS, "Accept": "*/*", "Accept-Language": "en"},
    )
    assert headless.status_code == 200
    admin = h.bearer(h.token_for(Role.ADMIN))
    listed = h.client.get(
        "/api/v1/audit", params={"type": "zero_trust_decision"}, headers=admin
    ).json()["events"]
    assert [e["request_id"] for e in listed] == [headless.headers["x-request-id"]]
    assert listed[0]["details"]["signals"] == {"user_agent": 40.0}
    assert (listed[0]["outcome"], listed[0]["severity"]) == ("success", "info")


def test_disabled_the_gate_weighs_nothing_and_remembers_nothing(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(zerotrust={"enabled": False, "deny_networks": [f"{CLIENT_IP}/32"]})
    name, password = h.create_user("rosa")
    answer = h.client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert answer.status_code == 200, answer.text
    with h.components.db() as db:
        from sqlalchemy import func, select

        from wakedock.zerotrust.models import SignInRecord

        assert db.scalar(select(func.count()).select_from(SignInRecord)) == 0


def test_a_sign_in_is_remembered_for_the_behaviour_signals(
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness()
    name, password = h.create_user("sam")
    answer = h.client.post(
        "/api/v1/auth/login",
        json={"username": name, "password": password},
        headers={"User-Agent": HEADLESS},
    )
    assert answer.status_code == 200
    with h.components.db() as db:
        from sqlalchemy import select

        from wakedock.zerotrust.models import SignInRecord

        [row] = db.scalars(select(SignInRecord)).all()
    assert (row.address, row.user_agent_family) == (CLIENT_IP, "HeadlessChrome")


def test_the_engine_sees_the_headers_without_credentials() -> None:
    raw = [
        (b"Authorization", b"Bearer eyJ.secret.token"),
        (b"Cookie", b"__Host-wakedock_session=secret"),
        (b"Accept", b"text/html"),
        (b"X-Forwarded-For", b"198.51.100.9"),
        (b"Via", b"1.1 edge"),
    ]
    proxied = client_headers(raw, from_trusted_proxy=True)
    assert proxied == {"authorization": "Bearer", "accept": "text/html"}
    direct = client_headers(raw, from_trusted_proxy=False)
    assert direct["x-forwarded-for"] == "198.51.100.9" and direct["via"] == "1.1 edge"
    assert "cookie" not in direct and "secret" not in str(direct)


def test_the_server_drops_sign_in_history_past_its_retention(
    make_harness: Callable[..., Harness],
) -> None:
    """Users who stopped signing in keep their rows only until the retention (180 days): the
    server prunes at start (and every hour), keeping the recent ones."""
    h = make_harness()
    name, _ = h.create_user("ulla")
    now = datetime.now(UTC)
    with transaction(h.components.db) as db:
        user_id = h.components.users.by_username(db, name).id
        for days in (200, 3):
            db.add(SignInRecord(user_id=user_id, address="80.67.169.12", country="FR",
                                at=now - timedelta(days=days)))  # fmt: skip
    with TestClient(create_asgi(h.components), base_url="https://testserver"):
        for _ in range(100):
            with h.components.db() as db:
                ages = sorted((now - at.replace(tzinfo=UTC)).days
                              for at in db.scalars(select(SignInRecord.at)))  # fmt: skip
            if ages == [3]:
                break
            time.sleep(0.05)
    assert ages == [3]
