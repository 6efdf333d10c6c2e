"""/api/v1/secrets against a real OpenBao: admins list and write; values come back only with
secrets:reveal and a fresh MFA proof, audited; other roles, traversal paths and WakeDock's own
keys are refused; a read-only provider says so."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import Harness
from support.openbao import ROOT_TOKEN, BaoServer, start_openbao
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

pytestmark = pytest.mark.integration
VALUE = "smtp-password-" + "q" * 20
OWN_KEY = "wakedock-own-signing-key-" + "j" * 30
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    server.client().secrets.kv.v2.create_or_update_secret(
        path="wakedock/jwt", secret={"key": OWN_KEY}, mount_point="secret"
    )
    yield server
    server.stop()


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], bao: BaoServer, clock: FakeClock) -> Harness:
    vault = {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN}
    return make_harness(clock=clock, secrets=vault)


def _trail(h: Harness) -> list[tuple[str, str, str | None, str]]:
    with h.components.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT type, outcome, target, details FROM audit_events ORDER BY seq")
        ).all()
    return [(r[0], r[1], r[2], r[3] or "") for r in rows]


def test_admin_writes_lists_and_reveals_with_step_up(
    h: Harness, bao: BaoServer, clock: FakeClock
) -> None:
    name, password = h.create_user("root", Role.ADMIN)
    token = h.login(name, password)["access_token"]  # enrols MFA
    auth = h.bearer(token)
    written = h.client.put(
        "/api/v1/secrets/mailer/smtp", json={"values": {"password": VALUE}}, headers=auth
    )
    assert written.status_code == 200, written.text
    assert written.json() == {"path": "mailer/smtp", "version": 1}
    stored = bao.client().secrets.kv.v2.read_secret_version(
        path="services/mailer/smtp", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"password": VALUE}  # under the services' prefix

    assert h.client.get("/api/v1/secrets", headers=auth).json()["children"] == ["mailer/"]
    assert h.client.get("/api/v1/secrets/mailer", headers=auth).json()["children"] == ["smtp"]
    described = h.client.get("/api/v1/secrets/mailer/smtp", headers=auth)
    body = described.json()
    assert body["keys"] == ["password"] and body["version"] == 1 and body["values"] is None
    assert VALUE not in described.text
    assert described.headers["cache-control"] == "no-store"

    # A second write makes version 2; a stale check-and-set is refused.
    again = h.client.put(
        "/api/v1/secrets/mailer/smtp",
        json={"values": {"password": VALUE + "-2"}, "cas": 1},
        headers=auth,
    )
    assert again.json()["version"] == 2
    stale = h.client.put(
        "/api/v1/secrets/mailer/smtp", json={"values": {"password": "x"}, "cas": 1}, headers=auth
    )
    assert stale.status_code == 409 and stale.json()["code"] == "secret_conflict"

    # Revealing needs a fresh MFA proof.
    clock.advance(h.components.settings.mfa.step_up_seconds + 1)
    refused = h.client.get("/api/v1/secrets/mailer/smtp?reveal=true", headers=auth)
    assert refused.status_code == 403 and refused.json()["code"] == "step_up_required"
    assert VALUE not in refused.text
    stepped = h.client.post(
        "/api/v1/auth/mfa/step-up", headers=auth, json={"code": h.totp_code(name)}
    )
    assert stepped.status_code == 200
    revealed = h.client.get("/api/v1/secrets/mailer/smtp?reveal=true", headers=auth)
    assert revealed.status_code == 200
    assert revealed.json()["values"] == {"password": VALUE + "-2"}
    assert revealed.headers["cache-control"] == "no-store"

    trail = _trail(h)
    kinds = [(t, o, target) for t, o, target, _ in trail if t in ("secret_write", "secret_reveal")]
    # Describing reads the values (KV v2 cannot list key names): audited as secret_access.
    assert ("secret_access", "success", "secret:services/mailer/smtp") in {
        (t, o, target) for t, o, target, _ in trail
    }
    assert kinds == [
        ("secret_write", "success", "secret:services/mailer/smtp"),
        ("secret_write", "success", "secret:services/mailer/smtp"),
        ("secret_write", "failure", "secret:services/mailer/smtp"),
        ("secret_reveal", "success", "secret:services/mailer/smtp"),
    ]
    assert VALUE not in json.dumps(trail)


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.DEVELOPER, Role.VIEWER])
def test_other_roles_cannot_list_write_or_reveal(h: Harness, role: Role) -> None:
    auth = h.bearer(h.token_for(role))
    assert h.client.get("/api/v1/secrets", headers=auth).status_code == 403
    assert h.client.get("/api/v1/secrets/x/y?reveal=true", headers=auth).status_code == 403
    put = h.client.put("/api/v1/secrets/x/y", json={"values": {"k": "v"}}, headers=auth)
    assert put.status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "..%2Fwakedock%2Fjwt",
        "%2E%2E/wakedock/jwt",
        "x/%2E%2E/%2E%2E/wakedock/jwt",
        "..",
        "x//y",
        "%00",
    ],
)
def test_traversal_never_reaches_wakedocks_own_keys(h: Harness, path: str) -> None:
    auth = h.bearer(h.token_for(Role.ADMIN))
    for reply in (
        h.client.get(f"/api/v1/secrets/{path}?reveal=true", headers=auth),
        h.client.put(f"/api/v1/secrets/{path}", json={"values": {"key": "x"}}, headers=auth),
    ):
        assert reply.status_code in (400, 404, 422), (path, reply.status_code, reply.text)
        assert OWN_KEY not in reply.text


def test_a_read_only_provider_says_so(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(secrets={"provider": "env"})
    auth = h.bearer(h.token_for(Role.ADMIN))
    reply = h.client.put("/api/v1/secrets/a/b", json={"values": {"k": "v"}}, headers=auth)
    assert reply.status_code == 409 and reply.json()["code"] == "secrets_read_only"
    assert "env" in reply.json()["detail"]


@pytest.mark.security
def test_a_reveal_is_weighed_by_the_stricter_reveal_secret_profile(
    make_harness: Callable[..., Harness], bao: BaoServer, clock: FakeClock
) -> None:
    """A headless browser (40) passes the admin profile where it signed in, and a fresh code
    does not get it a value past a `reveal_secret` profile that denies at 35."""
    vault = {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN}
    strict = {"profiles": {"reveal_secret": {"step_up_at": 20, "deny_at": 35}}}
    h = make_harness(clock=clock, secrets=vault, zerotrust=strict)
    h.client.headers["User-Agent"] = HEADLESS
    name, password = h.create_user("keeper", Role.ADMIN)
    h.login(name, password)
    auth = h.bearer(h.login(name, password)["access_token"])
    written = h.client.put(
        "/api/v1/secrets/shop/db", json={"values": {"password": VALUE}}, headers=auth
    )
    assert written.status_code == 200, written.text
    stepped = h.client.post(
        "/api/v1/auth/mfa/step-up", headers=auth, json={"code": h.backup_codes[name][0]}
    )
    assert stepped.status_code == 200
    assert h.client.get("/api/v1/secrets/shop/db", headers=auth).status_code == 200  # describe
    refused = h.client.get("/api/v1/secrets/shop/db?reveal=true", headers=auth)
    assert (refused.status_code, refused.json()["code"]) == (403, "zero_trust_denied")
    assert VALUE not in refused.text
    kinds = [t for t, o, _, details in _trail(h) if t == "secret_reveal"]
    assert kinds == []
    assert any(
        t == "zero_trust_decision" and '"purpose": "reveal_secret"' in details and o == "denied"
        for t, o, _, details in _trail(h)
    )
