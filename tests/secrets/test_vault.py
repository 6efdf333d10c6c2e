"""The Vault provider against a real OpenBao dev server: token and AppRole login, KV v2 reads
and a version bump seen without restart, policy refusals, sealed/unreachable at start-up, the
last known value while sealed at run time, token revocation on close."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import hvac
import hvac.exceptions
import pytest

from support.kube_api import TokenReviewer
from support.openbao import ROOT_TOKEN, BaoServer, start_openbao
from support.upstream import free_port
from wakedock.secrets.base import SecretBackendUnavailable, SecretForbidden, SecretNotFound
from wakedock.secrets.vault import VaultAuth, VaultProvider
from wakedock.server.tls import generate_self_signed

pytestmark = pytest.mark.integration
POLICY = 'path "secret/data/wakedock/*" { capabilities = ["read", "create", "update"] }'


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    root = server.client()
    root.sys.create_or_update_policy(name="wakedock", policy=POLICY)
    root.sys.enable_auth_method("approle")
    root.write("auth/approle/role/wakedock", token_policies=["wakedock"], token_ttl="1h")
    root.secrets.kv.v2.create_or_update_secret(
        path="wakedock/jwt", secret={"key": "first-signing-key-" + "x" * 20}, mount_point="secret"
    )
    root.secrets.kv.v2.create_or_update_secret(
        path="other/db", secret={"password": "not-for-wakedock"}, mount_point="secret"
    )
    yield server
    server.stop()


def approle(bao: BaoServer, tmp_path: Path) -> VaultAuth:
    root = bao.client()
    role_id = root.read("auth/approle/role/wakedock/role-id")["data"]["role_id"]
    secret_id = root.write("auth/approle/role/wakedock/secret-id")["data"]["secret_id"]
    path = tmp_path / "secret_id"
    path.write_text(secret_id)
    path.chmod(0o600)
    return VaultAuth("approle", role_id=role_id, secret_id_file=path)


def test_token_login_reads_kv2_and_never_shows_the_value(bao: BaoServer) -> None:
    vault = VaultProvider(bao.url, VaultAuth("token", token=ROOT_TOKEN))
    vault.check()
    secret = vault.read("wakedock/jwt", "key")
    assert secret.value.startswith("first-signing-key-")
    assert secret.source == "vault:secret/wakedock/jwt#key (v1)" and secret.version == 1
    assert secret.value not in repr(secret)
    with pytest.raises(SecretNotFound):
        vault.read("wakedock/jwt", "missing")
    with pytest.raises(SecretNotFound):
        vault.read("wakedock/nothing", "key")


def test_approle_login_policy_version_bump_and_revocation(bao: BaoServer, tmp_path: Path) -> None:
    vault = VaultProvider(bao.url, approle(bao, tmp_path))
    vault.check()
    assert vault.read("wakedock/jwt", "key").version == 1
    with pytest.raises(SecretForbidden):
        vault.read("other/db", "password")
    # Rotation: a new KV version, noticed on the next read, without a restart.
    version = vault.write("wakedock/jwt", {"key": "second-signing-key-" + "y" * 20})
    again = vault.read("wakedock/jwt", "key")
    assert again.version == version == 2 and again.value.startswith("second-signing-key-")
    token = vault._client.token
    vault.close()
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=bao.url, token=token).auth.token.lookup_self()


def test_a_wrong_secret_id_is_refused(bao: BaoServer, tmp_path: Path) -> None:
    auth = approle(bao, tmp_path)
    wrong = VaultAuth(
        "approle", role_id=auth.role_id, secret_id="00000000-0000-0000-0000-000000000000"
    )
    with pytest.raises(SecretForbidden, match="refused the approle login"):
        VaultProvider(bao.url, wrong).check()


def test_sealed_or_unreachable_at_start_up_is_refused_by_name(bao: BaoServer) -> None:
    nowhere = VaultProvider(f"http://127.0.0.1:{free_port()}", VaultAuth("token", token="x"))
    with pytest.raises(SecretBackendUnavailable, match="unreachable"):
        nowhere.check()
    bao.seal()
    try:
        with pytest.raises(SecretBackendUnavailable, match="is sealed"):
            VaultProvider(bao.url, VaultAuth("token", token=ROOT_TOKEN)).check()
    finally:
        bao.unseal()


def test_sealed_at_run_time_serves_the_last_value_and_reports_degraded(bao: BaoServer) -> None:
    vault = VaultProvider(bao.url, VaultAuth("token", token=ROOT_TOKEN))
    vault.check()
    known = vault.read("wakedock/jwt", "key").value
    bao.seal()
    try:
        assert vault.read("wakedock/jwt", "key").value == known
        assert vault.degraded
        with pytest.raises(SecretBackendUnavailable):
            vault.read("wakedock/never-read", "key")  # nothing known to fall back on
    finally:
        bao.unseal()
    vault.read("wakedock/jwt", "key")
    assert not vault.degraded


def _accessors(bao: BaoServer) -> set[str]:
    return set(bao.client().list("auth/token/accessors")["data"]["keys"])


def test_token_renewed_then_acquired_again_past_its_max_ttl(bao: BaoServer, tmp_path: Path) -> None:
    root = bao.client()
    root.write(
        "auth/approle/role/short", token_policies=["wakedock"], token_ttl="3s", token_max_ttl="5s"
    )
    role_id = root.read("auth/approle/role/short/role-id")["data"]["role_id"]
    secret_id = tmp_path / "short_secret_id"
    secret_id.write_text(root.write("auth/approle/role/short/secret-id")["data"]["secret_id"])
    secret_id.chmod(0o600)
    vault = VaultProvider(bao.url, VaultAuth("approle", role_id=role_id, secret_id_file=secret_id))
    before = _accessors(bao)
    vault.check()
    (first,) = _accessors(bao) - before
    seen = {first}
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:  # reads keep working across renewals and expiry
        assert vault.read("wakedock/jwt", "key").version >= 1
        seen |= _accessors(bao) - before
        time.sleep(0.5)
    # The first token could not outlive its 5 s max TTL: new ones were acquired by logging in.
    assert len(seen) >= 2 and first not in _accessors(bao)
    vault.close()


def test_a_revoked_token_is_replaced_on_the_next_read(bao: BaoServer, tmp_path: Path) -> None:
    vault = VaultProvider(bao.url, approle(bao, tmp_path))
    before = _accessors(bao)
    vault.check()
    (mine,) = _accessors(bao) - before
    bao.client().auth.token.revoke_accessor(mine)  # e.g. an operator's emergency revocation
    assert vault.read("wakedock/jwt", "key").value  # logged in again, read again
    with pytest.raises(SecretForbidden):  # a real policy refusal is still a refusal
        vault.read("other/db", "password")
    vault.close()


def test_kubernetes_service_account_login(bao: BaoServer, tmp_path: Path) -> None:
    reviewer = TokenReviewer("wakedock", "wakedock")
    try:
        root = bao.client()
        root.sys.enable_auth_method("kubernetes")
        # A CA certificate is required by the config even though this API server is plain HTTP.
        cert = tmp_path / "k8s-ca.pem"
        generate_self_signed(cert, tmp_path / "k8s-ca.key", "kubernetes.default.svc")
        root.write(
            "auth/kubernetes/config",
            kubernetes_host=reviewer.url,
            kubernetes_ca_cert=cert.read_text(),
            disable_local_ca_jwt=True,
            token_reviewer_jwt=reviewer.token,
        )
        root.write(
            "auth/kubernetes/role/wakedock",
            bound_service_account_names=["wakedock"],
            bound_service_account_namespaces=["wakedock"],
            token_policies=["wakedock"],
            token_ttl="1h",
        )
        mounted = tmp_path / "token"  # what Kubernetes mounts into the pod
        mounted.write_text(reviewer.token)
        mounted.chmod(0o600)
        auth = VaultAuth("kubernetes", kubernetes_role="wakedock", kubernetes_jwt_file=mounted)
        vault = VaultProvider(bao.url, auth)
        vault.check()
        assert vault.read("wakedock/jwt", "key").version >= 1
        assert reviewer.token in reviewer.reviews  # OpenBao asked the API server about it
        with pytest.raises(SecretForbidden):
            vault.read("other/db", "password")  # the role's policy applies
        vault.close()

        other = TokenReviewer("wakedock", "wakedock")  # a token this cluster never issued
        other.stop()
        mounted.write_text(other.token)
        with pytest.raises(SecretForbidden, match="refused the kubernetes login"):
            VaultProvider(bao.url, auth).check()
        mounted.chmod(0o644)
        with pytest.raises(ValueError, match="readable by every user"):
            VaultProvider(bao.url, auth).check()
    finally:
        reviewer.stop()


def test_tls_is_verified_against_the_configured_ca(tmp_path: Path) -> None:
    server = start_openbao(tmp_path, tls=True)
    try:
        ca = tmp_path / "vault-ca.pem"
        hvac.Client(
            url=server.url, token=ROOT_TOKEN, verify=str(ca)
        ).secrets.kv.v2.create_or_update_secret(
            path="wakedock/tls", secret={"key": "over-tls"}, mount_point="secret"
        )
        trusted = VaultProvider(server.url, VaultAuth("token", token=ROOT_TOKEN), ca_file=ca)
        trusted.check()
        assert trusted.read("wakedock/tls", "key").value == "over-tls"
        # Without the CA the server's certificate is not trusted: refused, never "don't verify".
        untrusted = VaultProvider(server.url, VaultAuth("token", token=ROOT_TOKEN))
        with pytest.raises(SecretBackendUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.check()
    finally:
        server.stop()
