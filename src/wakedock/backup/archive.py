"""A backup file: a gzip'd tar, mode 0600, whose first member is a manifest (versions, the audit
head, a SHA-256 per member), then the database and the data directory's keys and files.

The audit chain is keyed: a database without its chain key cannot be verified (and an MFA
secret without the MFA key cannot be opened), so the generated keys travel in the same file.
The file therefore holds secrets: it is created 0600 and must be stored like a secret.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from wakedock import __version__
from wakedock.backup.database import BackupError, Progress, Snapshot

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"sqlite": "database/wakedock.db", "postgresql": "database/wakedock.pgdump"}
# What of the data directory is kept: generated keys, the generated certificate, service files.
DATA_DIRS = ("secrets", "tls", "files")
# Keys without which restored data is unusable: setting -> file under data_dir/secrets.
REQUIRED_KEYS = {"audit.chain_key": "audit_chain_key", "mfa.encryption_key": "mfa_encryption_key"}
_SAFE_NAME = re.compile(r"^(database/wakedock\.(db|pgdump)|data/(secrets|tls|files)(/[\w.@+-]+)+)$")
CHUNK = 1 << 20


@dataclass
class Manifest:
    """What a backup holds and what was true when it was taken."""

    database: str
    audit_seq: int
    audit_hash: str
    schema_revision: str | None
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    # setting -> "archived" | "configured" (kept outside the data directory: not in the file)
    keys: dict[str, str] = field(default_factory=dict)
    wakedock_version: str = __version__
    format: int = FORMAT
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise BackupError(f"backup format {data.get('format')} is not {FORMAT}")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise BackupError(f"the manifest is unreadable: {exc}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def data_files(data_dir: Path) -> Iterator[tuple[str, Path]]:
    """(member name, path) of every regular file kept from the data directory."""
    for top in DATA_DIRS:
        root = data_dir / top
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield f"data/{path.relative_to(data_dir).as_posix()}", path


def write_backup(
    out: Path, snapshot: Snapshot, data_dir: Path, keys: dict[str, str], progress: Progress
) -> Manifest:
    """Write the backup file (0600, never over an existing file, whole or not at all)."""
    manifest = Manifest(
        snapshot.kind, snapshot.audit_seq, snapshot.audit_hash, snapshot.schema_revision, keys=keys
    )
    sources = [(DATABASE_MEMBERS[snapshot.kind], snapshot.path), *data_files(data_dir)]
    for name, path in sources:
        progress(f"checksum {name}")
        manifest.members[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    partial = out.with_name(out.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{partial} exists (another backup running?): remove it") from None
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, MANIFEST, manifest.to_json())
            for name, path in sources:
                progress(f"archiving {name}")
                info = tarfile.TarInfo(name)
                info.size, info.mode = path.stat().st_size, 0o600
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        if out.exists():
            raise BackupError(f"{out} exists: a backup is never overwritten")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def read_manifest(backup: Path) -> Manifest:
    """The manifest, which must be the file's first member."""
    with _open(backup) as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile():
            raise BackupError(f"{backup} is not a WakeDock backup (no manifest first)")
        handle = tar.extractfile(first)
        if handle is None:
            raise BackupError(f"{backup}: the manifest cannot be read")
        manifest = Manifest.from_json(handle.read())
    for name in manifest.members:
        if not _SAFE_NAME.match(name) or ".." in PurePosixPath(name).parts:
            raise BackupError(f"the manifest lists an unexpected member {name!r}")
    return manifest


def extract_verified(
    backup: Path, manifest: Manifest, staging: Path, progress: Progress
) -> dict[str, Path]:
    """Every listed member written under `staging` (0600) after its SHA-256 matched; nothing
    that is not a listed regular file is ever written (no links, devices or odd paths)."""
    extracted: dict[str, Path] = {}
    with _open(backup) as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            expected = manifest.members.get(member.name)
            if expected is None or not member.isfile():
                raise BackupError(f"the backup holds {member.name!r}, not in its manifest")
            if member.name in extracted:
                raise BackupError(f"the backup holds {member.name!r} twice")
            progress(f"checking {member.name}")
            handle = tar.extractfile(member)
            if handle is None:
                raise BackupError(f"{member.name}: cannot be read")
            target = staging / member.name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if _copy_hashed(handle, target) != expected["sha256"]:
                raise BackupError(
                    f"checksum mismatch for {member.name}: the backup is corrupt or was modified"
                )
            extracted[member.name] = target
    missing = sorted(set(manifest.members) - set(extracted))
    if missing:
        raise BackupError(f"the backup lacks members its manifest lists: {', '.join(missing)}")
    return extracted


def _copy_hashed(source: IO[bytes], target: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _open(backup: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(backup, mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{backup} cannot be read as a backup: {exc}") from None
