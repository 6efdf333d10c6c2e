"""Configuration: YAML + WAKEDOCK_* + *_FILE, validated, errors naming the key."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import MappingProxyType

import pytest

from wakedock.config import ConfigError, load_settings


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("WAKEDOCK_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.environment == "production"
    assert settings.server.host == "127.0.0.1"
    assert settings.auth.registration_enabled is False
    assert settings.http.cors_origins == []
    assert settings.http.docs_enabled is False
    assert settings.rate_limit.storage_url.get_secret_value() == "memory://"
    assert settings.auth.jwt_signing_key is None


def test_priority_cli_over_env_over_file_over_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "wakedock.yaml"
    config.write_text(
        "server:\n  port: 1001\n  host: 127.0.0.2\nauth:\n  password_min_length: 14\n"
    )
    assert load_settings(config).server.port == 1001
    monkeypatch.setenv("WAKEDOCK_SERVER__PORT", "1002")
    settings = load_settings(config)
    assert (settings.server.port, settings.server.host) == (1002, "127.0.0.2")
    assert settings.auth.password_min_length == 14
    assert load_settings(config, {"server": {"port": 1003}}).server.port == 1003


def test_file_variables_hold_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "jwt"
    secret.write_text("k" * 40 + "\n")
    secret.chmod(0o600)
    monkeypatch.setenv("WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE", str(secret))
    settings = load_settings()
    assert settings.auth.jwt_signing_key is not None
    assert settings.auth.jwt_signing_key.get_secret_value() == "k" * 40
    # Never shown in a repr or a dump.
    assert "k" * 40 not in repr(settings)


def test_loading_leaves_the_environment_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread may read the environment while WakeDock loads its settings."""
    secret = tmp_path / "jwt"
    secret.write_text("k" * 40)
    secret.chmod(0o600)
    monkeypatch.setenv("WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE", str(secret))
    monkeypatch.setenv("WAKEDOCK_SERVER__PORT", "1002")
    environ = dict(os.environ)
    with monkeypatch.context() as patched:
        # A read-only view: a change while loading (even one undone afterwards) fails here.
        patched.setattr(os, "environ", MappingProxyType(environ))
        settings = load_settings()
        with pytest.raises(ConfigError, match=r"server\.port"):
            load_settings(overrides={"server": {"port": 0}})
    assert settings.server.port == 1002
    assert settings.auth.jwt_signing_key is not None
    assert settings.auth.jwt_signing_key.get_secret_value() == "k" * 40
    assert dict(os.environ) == environ


def test_settings_whose_key_ends_in_file_are_paths_not_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate is public and world-readable: WAKEDOCK_SERVER__TLS_CERT_FILE names it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    cert.chmod(0o644)
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    monkeypatch.setenv("WAKEDOCK_SERVER__TLS_CERT_FILE", str(cert))
    monkeypatch.setenv("WAKEDOCK_SERVER__TLS_KEY_FILE", str(key))
    settings = load_settings()
    assert settings.server.tls_cert_file == cert
    assert settings.server.tls_key_file == key


@pytest.mark.parametrize(
    ("mode", "content", "message"),
    [
        (0o644, "k" * 40, "readable by every user (mode 644); run chmod 600"),
        (0o604, "k" * 40, "readable by every user (mode 604)"),
        (0o600, "   \n", "is empty"),
    ],
)
def test_unsafe_secret_files_are_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int, content: str, message: str
) -> None:
    secret = tmp_path / "jwt"
    secret.write_text(content)
    secret.chmod(mode)
    monkeypatch.setenv("WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE", str(secret))
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_settings()
    assert "WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE" in str(caught.value)
    assert "k" * 40 not in str(caught.value)


def test_group_readable_secret_files_are_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "jwt"
    secret.write_text("g" * 40)
    secret.chmod(0o440)
    monkeypatch.setenv("WAKEDOCK_AUTH__JWT_SIGNING_KEY_FILE", str(secret))
    key = load_settings().auth.jwt_signing_key
    assert key is not None and key.get_secret_value() == "g" * 40


def test_a_directory_is_not_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAKEDOCK_DATABASE__URL_FILE", str(tmp_path))
    with pytest.raises(ConfigError, match="not a regular file"):
        load_settings()


def test_unreadable_file_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAKEDOCK_DATABASE__URL_FILE", "/nonexistent/db-url")
    with pytest.raises(ConfigError, match=r"WAKEDOCK_DATABASE__URL_FILE: .* does not exist"):
        load_settings()


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("auth:\n  password_min_length: 4\n", "auth.password_min_length"),
        ("auth:\n  pasword_min_length: 14\n", "auth.pasword_min_length: unknown key"),
        ("server:\n  port: 70000\n", "server.port"),
        ("http:\n  cors_origins: ['*']\n", "http.cors_origins"),
        ("http:\n  trusted_proxies: ['not-a-cidr']\n", "http.trusted_proxies"),
        ("rate_limit:\n  storage_url: mysql://x\n", "rate_limit.storage_url"),
        ("rate_limit:\n  login_per_ip: lots\n", "rate_limit.login_per_ip"),
        ("auth:\n  jwt_signing_key: short\n", "auth.jwt_signing_key"),
        ("auth:\n  argon2_memory_kib: 1024\n", "auth.argon2_memory_kib"),
        ("environment: staging\n", "environment"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert key in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"http": {"trusted_proxies": ["10.0.0.0/8", "zqmarker"]}}, "http.trusted_proxies"),
        ({"http": {"cors_origins": ["https://zqmarker/"]}}, "http.cors_origins"),
        ({"http": {"cors_origins": ["zqmarker"]}}, "http.cors_origins"),
        ({"alerts": {"allowed_networks": ["zqmarker"]}}, "alerts.allowed_networks"),
        ({"docker": {"bind_mount_allowlist": ["zqmarker"]}}, "docker.bind_mount_allowlist"),
        ({"proxy": {"base_domain": "zq_marker"}}, "proxy.base_domain"),
        ({"proxy": {"wake_per_ip": "zqmarker"}}, "proxy.wake_per_ip"),
        ({"mfa": {"required_roles": ["zqmarker"]}}, "mfa.required_roles"),
    ],
)
def test_invalid_values_are_named_not_repeated(overrides: dict[str, object], key: str) -> None:
    # A value may be anything, a secret pasted into the wrong key included: the message names
    # the key (and the item), never the value.
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides)
    assert key in str(caught.value)
    assert "zq_marker" not in str(caught.value) and "zqmarker" not in str(caught.value)


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "list.yaml"
    config.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(config)
    config.write_text("auth: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), ("true", True), ("false", False), ("False", False), (True, True)],
)
def test_direct_routes_take_auto_true_or_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: object, expected: object
) -> None:
    monkeypatch.delenv("WAKEDOCK_EDGE__DIRECT_ROUTES", raising=False)
    assert load_settings().edge.direct_routes == "auto"  # the default
    config = tmp_path / "edge.yaml"
    config.write_text(f"edge:\n  direct_routes: {value}\n")
    assert load_settings(config).edge.direct_routes == expected
    monkeypatch.setenv("WAKEDOCK_EDGE__DIRECT_ROUTES", str(value))
    assert load_settings().edge.direct_routes == expected


@pytest.mark.parametrize("value", ["sometimes", "2", "''"])
def test_direct_routes_refuse_anything_else_clearly(tmp_path: Path, value: str) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(f"edge:\n  direct_routes: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "edge.direct_routes" in str(caught.value)
    assert "must be auto, true or false" in str(caught.value)
