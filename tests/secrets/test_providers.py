"""Environment and file secret providers: names, modes, traversal, symlinks out of the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wakedock.secret_files import SecretFileError
from wakedock.secrets.base import SecretNotFound
from wakedock.secrets.providers import EnvProvider, FileProvider, secret_variable


def test_env_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    assert secret_variable("db/app", "password") == "WAKEDOCK_SECRET_DB__APP__PASSWORD"
    monkeypatch.setenv("WAKEDOCK_SECRET_DB__APP__PASSWORD", "s3cret-value")
    secret = EnvProvider().read("db/app", "password")
    assert (
        secret.value == "s3cret-value" and secret.source == "env:WAKEDOCK_SECRET_DB__APP__PASSWORD"
    )
    with pytest.raises(SecretNotFound, match="WAKEDOCK_SECRET_DB__APP__USER"):
        EnvProvider().read("db/app", "user")


def _secret(path: Path, content: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)


def test_file_provider_nested_and_flat(tmp_path: Path) -> None:
    _secret(tmp_path / "db" / "app" / "password", "nested\n")
    _secret(tmp_path / "smtp_password", "flat")
    files = FileProvider(tmp_path)
    assert files.read("db/app", "password").value == "nested"
    assert files.read("smtp", "password").value == "flat"
    _secret(tmp_path / "loose_key", "x", mode=0o644)
    with pytest.raises(SecretFileError, match="readable by every user"):
        files.read("loose", "key")


@pytest.mark.parametrize(
    ("path", "key"), [("../etc", "passwd"), ("/etc", "shadow"), ("a", "../b"), ("a//b", "k")]
)
def test_file_provider_refuses_traversal(tmp_path: Path, path: str, key: str) -> None:
    with pytest.raises(ValueError, match="invalid secret"):
        FileProvider(tmp_path).read(path, key)


def test_file_provider_ignores_symlinks_out_of_its_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _secret(outside, "host secret")
    root = tmp_path / "secrets"
    root.mkdir()
    os.symlink(outside, root / "leak_key")
    with pytest.raises(SecretNotFound):
        FileProvider(root).read("leak", "key")


def test_env_names_never_cross_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    # `services/web-admin#password` belongs to the service web-admin; the owner of `web` must
    # not reach it by spelling `services/web#admin_password` (both once mapped to one name).
    assert secret_variable("services/web-admin", "password") != secret_variable(
        "services/web", "admin_password"
    )
    monkeypatch.setenv(secret_variable("services/web-admin", "password"), "web-admin-secret")
    with pytest.raises(SecretNotFound):
        EnvProvider().read("services/web", "admin_password")
    for path, key in (("a_", "k"), ("a", "_k"), ("a-_b", "k"), ("a__b", "k")):
        with pytest.raises(ValueError, match="environment variable"):
            EnvProvider().read(path, key)
