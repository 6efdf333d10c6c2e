"""Secrets given to a test's settings from each kind of source WakeDock reads: a `*_FILE`
variable (the MFA key) and a `secret:` reference read from a secrets directory (the JWT key).
The settings tests then check that only each secret's source is shown, never its value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def secrets_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, mfa_key: str, jwt_key: str
) -> Path:
    """`WAKEDOCK_MFA__ENCRYPTION_KEY_FILE` set to a 0600 file holding `mfa_key`, and a secrets
    directory with `wakedock/jwt` holding `jwt_key` (`secret:wakedock#jwt`): the directory."""
    mfa_file = tmp_path / "mfa_key"
    mfa_file.write_text(mfa_key)
    os.chmod(mfa_file, 0o600)
    monkeypatch.setenv("WAKEDOCK_MFA__ENCRYPTION_KEY_FILE", str(mfa_file))
    secrets_dir = tmp_path / "run-secrets"
    (secrets_dir / "wakedock").mkdir(parents=True)
    (secrets_dir / "wakedock" / "jwt").write_text(jwt_key)
    os.chmod(secrets_dir / "wakedock" / "jwt", 0o600)
    return secrets_dir
