"""Secrets in the configuration: plain values refused in production (warned in development),
`secret:` references resolved through the provider (environment, files, real OpenBao), and
`wakedock config check` naming each source without ever printing a value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from support.openbao import ROOT_TOKEN, BaoServer, start_openbao
from support.server import free_port, run_cli, wakedock_server
from wakedock.auth.passwords import PasswordHasher
from wakedock.components import build_components
from wakedock.config import ConfigError, load_settings
from wakedock.secrets.base import SecretBackendUnavailable

KEY = "a-very-long-signing-key-from-the-vault-0123456789"


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wakedock.yaml"
    path.write_text(text)
    return path


def test_production_refuses_plain_secrets_in_yaml_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _yaml(tmp_path, f"auth:\n  jwt_signing_key: {'p' * 40}\n")
    with pytest.raises(
        ConfigError, match=r"auth\.jwt_signing_key is a plain secret in the YAML file"
    ) as caught:
        load_settings(config)
    assert "WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE" in str(caught.value) and "p" * 40 not in str(
        caught.value
    )
    monkeypatch.setenv("WAKEDOCK_DATABASE__URL", "postgresql://app:hunter2-long@db/wakedock")
    with pytest.raises(
        ConfigError, match=r"database\.url is a plain secret in the variable WAKEDOCK_DATABASE__URL"
    ):
        load_settings()
    monkeypatch.setenv("WAKEDOCK_DATABASE__URL", "postgresql://db/wakedock")  # no password: fine
    assert load_settings().database.url is not None


def test_development_only_warns(tmp_path: Path) -> None:
    config = _yaml(tmp_path, f"environment: development\nmfa:\n  encryption_key: {'m' * 40}\n")
    with pytest.warns(UserWarning, match=r"mfa\.encryption_key .*\(refused in production\)"):
        assert load_settings(config).mfa.encryption_key is not None


def test_env_references_resolve_and_config_check_names_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _yaml(
        tmp_path, "auth:\n  jwt_signing_key: secret:wakedock/jwt#key\nsecrets:\n  provider: env\n"
    )
    env = {"WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY": KEY, "WAKEDOCK_CONFIG": str(config)}
    checked = run_cli(tmp_path / "data", "config", "check", env=env)
    assert checked.returncode == 0, checked.stderr
    assert "env:WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY (referenced from yaml)" in checked.stdout
    assert KEY not in checked.stdout + checked.stderr
    missing = run_cli(tmp_path / "data", "config", "check", env={"WAKEDOCK_CONFIG": str(config)})
    assert missing.returncode == 1 and "WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY" in missing.stderr
    monkeypatch.setenv("WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY", KEY)
    settings = load_settings(config, {"data_dir": tmp_path / "data"})
    c = build_components(settings, hasher=PasswordHasher(19456, 2, 1))
    assert c.settings.auth.jwt_signing_key is not None
    assert c.settings.auth.jwt_signing_key.get_secret_value() == KEY
    assert c.secret_sources == {"auth.jwt_signing_key": "env:WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY"}
    # The read is audited (setting and source), and the value appears nowhere in the trail.
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT target, details FROM audit_events WHERE type = 'secret_access'")
        ).all()
        trail = " ".join(str(r) for r in conn.execute(sa.text("SELECT * FROM audit_events")))
    assert [r[0] for r in rows] == ["auth.jwt_signing_key"]
    assert "env:WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY" in rows[0][1]
    assert KEY not in trail


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    server.client().secrets.kv.v2.create_or_update_secret(
        path="wakedock/jwt", secret={"key": KEY}, mount_point="secret"
    )
    yield server
    server.stop()


@pytest.mark.integration
def test_vault_references_resolve_at_start_and_a_sealed_vault_stops_start_up(
    tmp_path: Path, bao: BaoServer
) -> None:
    token = tmp_path / "vault-token"
    token.write_text(ROOT_TOKEN)
    token.chmod(0o600)
    config = _yaml(
        tmp_path,
        "auth:\n  jwt_signing_key: secret:wakedock/jwt#key\n"
        f"secrets:\n  provider: vault\n  vault_url: {bao.url}\n",
    )
    env = {"WAKEDOCK_SECRETS__VAULT_TOKEN_FILE": str(token), "WAKEDOCK_CONFIG": str(config)}
    checked = run_cli(tmp_path / "data", "config", "check", env=env)
    assert checked.returncode == 0, checked.stderr
    assert "vault:secret/wakedock/jwt#key (v1)" in checked.stdout and KEY not in checked.stdout
    assert "file named by WAKEDOCK_SECRETS__VAULT_TOKEN_FILE" in checked.stdout
    bao.seal()
    try:
        refused = run_cli(tmp_path / "data", "config", "check", env=env)
        assert refused.returncode == 1 and "is sealed" in refused.stderr
        # `wakedock serve` refuses to start, saying why (no traceback).
        served = run_cli(tmp_path / "data", "serve", "--port", str(free_port()), env=env)
        assert served.returncode == 1
        assert f"Error: Vault at {bao.url} is sealed" in served.stderr
        assert "Traceback" not in served.stderr
        settings = load_settings(
            config, {"data_dir": tmp_path / "data", "secrets": {"vault_token": ROOT_TOKEN}}
        )
        with pytest.raises(SecretBackendUnavailable, match="sealed"):
            build_components(settings)
    finally:
        bao.unseal()


@pytest.mark.integration
def test_the_server_revokes_its_vault_token_when_it_stops(tmp_path: Path, bao: BaoServer) -> None:
    root = bao.client()
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.write("auth/approle/role/server", token_policies=["default"], token_ttl="1h")
    role_id = root.read("auth/approle/role/server/role-id")["data"]["role_id"]
    secret_id = tmp_path / "secret_id"
    secret_id.write_text(root.write("auth/approle/role/server/secret-id")["data"]["secret_id"])
    secret_id.chmod(0o600)
    config = _yaml(
        tmp_path,
        f"secrets:\n  provider: vault\n  vault_url: {bao.url}\n  vault_auth: approle\n"
        f"  vault_role_id: {role_id}\n  vault_secret_id_file: {secret_id}\n",
    )

    def tokens() -> int:
        return len(root.list("auth/token/accessors")["data"]["keys"])

    before = tokens()
    with wakedock_server(tmp_path / "data", env={"WAKEDOCK_CONFIG": str(config)}):
        assert tokens() == before + 1  # logged in through AppRole at start-up
    assert tokens() == before  # revoked on shutdown


def test_webhook_and_sink_urls_may_be_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loopback (allowed below): the SSRF check resolves webhook hosts at start-up.
    hook = "slack+https://127.0.0.1:9/services/T0/B0/" + "h" * 24
    config = _yaml(
        tmp_path,
        "secrets:\n  provider: env\n"
        "alerts:\n  webhooks:\n    - secret:alerts/slack#url\n"
        "  allowed_networks: [127.0.0.0/8]\n"
        f"siem:\n  sinks:\n    - file://{tmp_path}/audit.jsonl\n    - secret:siem/collector#url\n",
    )
    monkeypatch.setenv("WAKEDOCK_SECRET_ALERTS__SLACK__URL", hook)
    monkeypatch.setenv("WAKEDOCK_SECRET_SIEM__COLLECTOR__URL", "https://collector.example.com/in")
    env = {"WAKEDOCK_CONFIG": str(config)}
    checked = run_cli(tmp_path / "data", "config", "check", env=env)
    assert checked.returncode == 0, checked.stderr
    assert "alerts.webhooks[0]" in checked.stdout and "env:WAKEDOCK_SECRET_ALERTS__SLACK__URL" in (
        checked.stdout
    )
    assert "siem.sinks[1]" in checked.stdout and hook not in checked.stdout
    settings = load_settings(config, {"data_dir": tmp_path / "data"})
    c = build_components(settings, hasher=PasswordHasher(19456, 2, 1))
    assert c.settings.alerts.webhooks == [hook]
    assert c.settings.siem.sinks[1] == "https://collector.example.com/in"
    assert len(c.siem.workers) == 3  # two sinks and the alert pipeline
    # The referenced sink's cursor is keyed by its reference: a rotated URL keeps its place,
    # and no hash of the credential URL is stored.
    from wakedock.siem.exporter import sink_key

    assert c.siem.workers[1].key == sink_key("secret:siem/collector#url")
    assert c.siem.workers[1].sink.name == "https://collector.example.com"
    # A reference that resolves to something that is not a sink URL is refused, not echoed.
    monkeypatch.setenv("WAKEDOCK_SECRET_SIEM__COLLECTOR__URL", "ftp://user:pw-leak@x/y")
    with pytest.raises(ValueError, match=r"siem\.sinks: a referenced URL is not valid") as caught:
        build_components(load_settings(config, {"data_dir": tmp_path / "data2"}))
    assert "pw-leak" not in str(caught.value)


def test_sink_token_files_follow_the_secret_file_rules(tmp_path: Path) -> None:
    from wakedock.siem.sinks import parse_sink

    token = tmp_path / "hec"
    token.write_text("hec-token")
    token.chmod(0o644)
    with pytest.raises(ValueError, match="readable by every user"):
        parse_sink(f"splunk+https://splunk.example.com/x?token_file={token}")
    token.chmod(0o600)
    assert parse_sink(f"splunk+https://splunk.example.com/x?token_file={token}") is not None


@pytest.mark.integration
def test_an_explicit_fallback_serves_while_vault_is_sealed_at_start_up(
    tmp_path: Path, bao: BaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wakedock.secrets.providers import WithFallback

    monkeypatch.setattr(WithFallback, "RETRY_SECONDS", 0.0)  # retry Vault at the next read
    monkeypatch.setenv("WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY", "f" * 48)
    overrides = {
        "data_dir": tmp_path / "data",
        "auth": {"jwt_signing_key": "secret:wakedock/jwt#key"},
        "secrets": {"provider": "vault", "vault_url": bao.url, "vault_token": ROOT_TOKEN,
                    "vault_fallback": "env"},
    }  # fmt: skip
    bao.seal()
    try:
        c = build_components(load_settings(None, overrides), hasher=PasswordHasher(19456, 2, 1))
        assert c.secret_sources == {
            "auth.jwt_signing_key": "env:WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY"
        }
        assert c.secret_provider is not None and c.secret_provider.degraded
    finally:
        bao.unseal()
    assert c.secret_provider.read("wakedock/jwt", "key").value == KEY  # Vault again
    assert not c.secret_provider.degraded
