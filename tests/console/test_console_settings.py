"""`/admin/settings` in process: the effective configuration read-only, each secret as its
source and never its value (the same data as `GET /api/v1/settings`), the read audited;
operators and viewers get the 403 page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import events
from support.secret_sources import secrets_from_files
from wakedock.rbac.permissions import Role

from .conftest import SignIn

# Distinctive secret values: none of them may appear on the page.
JWT_KEY = "zqconsole-jwt-" + "j" * 40
MFA_KEY = "zqconsole-mfa-" + "m" * 40
CHAIN_KEY = "zqconsole-chain-" + "c" * 40
VAULT_TOKEN = "zqconsole-vault-token"
SINK = "https://127.0.0.1:9/zqconsole-sink?token=zqconsole-sink-token"


@pytest.fixture
def h(
    make_harness: Callable[..., Harness],
    runtime: FakeRuntime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    # One secret from each kind of source: a *_FILE variable, a secret: reference read from the
    # secrets directory, plain values given to the loader, a list item (a URL with a token).
    secrets_dir = secrets_from_files(tmp_path, monkeypatch, mfa_key=MFA_KEY, jwt_key=JWT_KEY)
    return make_harness(
        runtime=runtime,
        auth={"jwt_signing_key": "secret:wakedock#jwt"},
        audit={"chain_key": CHAIN_KEY},
        secrets={"provider": "file", "directory": secrets_dir, "vault_token": VAULT_TOKEN},
        siem={"sinks": [SINK]},
        http={"trusted_proxies": ["10.0.0.0/8"]},
    )


def _row(page: str, name: str) -> str:
    start = page.index(f"<code>{name}</code>")
    return page[start : page.index("</tr>", start)]


def test_an_admin_reads_every_setting_and_only_the_source_of_each_secret(
    signed_in: SignIn, h: Harness
) -> None:
    admin = signed_in(Role.ADMIN)
    page = admin.browser.get("/admin/settings")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert "zqconsole" not in page.text
    assert '<strong id="environment">production</strong>' in page.text
    assert '<strong id="secrets-provider">file</strong>' in page.text
    # Plain settings as they are in force, by section.
    assert '<h2 id="section-http">http</h2>' in page.text
    assert "10.0.0.0/8" in _row(page.text, "trusted_proxies")
    assert ">12</span>" in _row(page.text, "password_min_length")
    # Each secret as where it comes from, as the API says it.
    api = h.client.get("/api/v1/settings", headers=h.bearer(h.token_for(Role.OPERATOR))).json()
    jwt = _row(page.text, "jwt_signing_key")
    assert 'data-value="secret"' in jwt and "reference, from " in jwt
    assert api["auth"]["jwt_signing_key"]["from"] in jwt
    assert "file (WAKEDOCK_MFA__ENCRYPTION_KEY_FILE)" in _row(page.text, "encryption_key")
    assert ">yaml</span>" in _row(page.text, "chain_key")
    assert ">yaml</span>" in _row(page.text, "vault_token")
    assert "https URL, yaml" in _row(page.text, "sinks")
    reads = [e for e in events(h, "data_access") if e.actor == admin.username]
    assert reads and reads[-1].target == "configuration"


@pytest.mark.security
@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_operators_and_viewers_get_the_403_page(signed_in: SignIn, h: Harness, role: Role) -> None:
    page = signed_in(role).browser.get("/admin/settings")
    assert page.status_code == 403
    assert "Only administrators may open the admin console." in page.text
    assert "jwt_signing_key" not in page.text
