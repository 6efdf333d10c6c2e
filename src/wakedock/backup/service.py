"""Take a backup of an installation, restore one into a new installation and prove it whole:
the restored audit chain verifies with the restored key and ends at the manifest's head."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import select

from wakedock.audit.chain import AuditChain, audit_chain_key
from wakedock.audit.models import AuditChainHead
from wakedock.audit.verify import Verdict, verify_chain
from wakedock.backup.archive import (
    DATA_DIRS,
    REQUIRED_KEYS,
    Manifest,
    data_files,
    extract_verified,
    read_manifest,
    write_backup,
)
from wakedock.backup.database import (
    BackupError,
    Progress,
    database_kind,
    holds_data,
    restore_database,
    snapshot_postgres,
    snapshot_sqlite,
)
from wakedock.config import Settings
from wakedock.db import MIGRATIONS_DIR, make_engine, make_session_factory


def _configured(settings: Settings, setting: str) -> bool:
    section, key = setting.split(".")
    return getattr(getattr(settings, section), key) is not None


def create_backup(settings: Settings, out: Path, progress: Progress) -> Manifest:
    """Snapshot the database and write it with the data directory's keys and files to `out`."""
    url, data_dir = settings.database_url(), settings.data_dir
    kind = database_kind(url)
    keys: dict[str, str] = {}
    for setting, filename in REQUIRED_KEYS.items():
        if _configured(settings, setting):
            keys[setting] = "configured"
        elif (data_dir / "secrets" / filename).is_file():
            keys[setting] = "archived"
        else:
            keys[setting] = "absent"
    out = out.absolute()
    # The staging directory is private (mkdtemp: 0700) and beside `out`, on the same disk.
    staging = Path(tempfile.mkdtemp(prefix=".wakedock-backup-", dir=out.parent))
    try:
        dump = staging / ("wakedock.db" if kind == "sqlite" else "wakedock.pgdump")
        snapshot = (snapshot_sqlite if kind == "sqlite" else snapshot_postgres)(url, dump, progress)
        return write_backup(out, snapshot, data_dir, keys, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    files: int
    verdict: Verdict
    head: tuple[int, str] | None

    @property
    def head_matches(self) -> bool:
        return self.head == (self.manifest.audit_seq, self.manifest.audit_hash)


def check_keys(settings: Settings, manifest: Manifest) -> None:
    """Refuse a restore whose data could not be verified or read: a key neither in the backup
    nor configured for the target."""
    for setting, filename in REQUIRED_KEYS.items():
        member = f"data/secrets/{filename}"
        if member in manifest.members or _configured(settings, setting):
            continue
        needed = manifest.keys.get(setting) in ("archived", "configured") or (
            setting == "audit.chain_key" and manifest.audit_seq > 0
        )
        if needed:
            raise BackupError(
                f"the key {setting} is not in this backup ({member} missing) and is not "
                f"configured for the target: the restored data could not be verified or read. "
                f"Restore refused; configure the original key (WAKEDOCK_"
                f"{setting.replace('.', '__').upper()}_FILE) or use a complete backup."
            )


def check_schema(manifest: Manifest) -> None:
    """A backup from a newer WakeDock has a schema this version cannot run."""
    if not manifest.schema_revision:
        return
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        ScriptDirectory.from_config(config).get_revision(manifest.schema_revision)
    except CommandError:
        raise BackupError(
            f"the backup was made by WakeDock {manifest.wakedock_version} with schema revision "
            f"{manifest.schema_revision}, unknown to this version: upgrade WakeDock first"
        ) from None


def check_target(settings: Settings, manifest: Manifest) -> None:
    """Refuse to overwrite an installation by mistake."""
    url, data_dir = settings.database_url(), settings.data_dir
    clashes = [
        str(data_dir / name.removeprefix("data/"))
        for name in manifest.members
        if name.startswith("data/") and (data_dir / name.removeprefix("data/")).exists()
    ]
    if holds_data(url):
        clashes.insert(0, f"the {database_kind(url)} database")
    if clashes:
        shown = ", ".join(clashes[:3]) + (" ..." if len(clashes) > 3 else "")
        raise BackupError(
            f"the target already holds data ({shown}): restore into a new data directory and "
            "database, or pass --force to replace them"
        )


def restore_backup(
    settings: Settings, backup: Path, *, force: bool, progress: Progress
) -> Restored:
    """Check the backup whole, write it into the target, verify the audit chain."""
    url, data_dir = settings.database_url(), settings.data_dir
    manifest = read_manifest(backup)
    kind = database_kind(url)
    if manifest.database != kind:
        raise BackupError(f"the backup holds a {manifest.database} database; the target is {kind}")
    check_schema(manifest)
    check_keys(settings, manifest)
    if not force:
        check_target(settings, manifest)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    try:
        extracted = extract_verified(backup, manifest, staging, progress)
        dumps = [p for name, p in extracted.items() if name.startswith("database/")]
        if len(dumps) != 1:
            raise BackupError("the backup holds no database")
        progress(f"restoring the {kind} database")
        restore_database(url, dumps[0], force=force, progress=progress)
        if force:  # a replaced installation keeps none of its old keys or files
            for top in DATA_DIRS:
                if (data_dir / top).is_dir():
                    shutil.rmtree(data_dir / top)
        files = 0
        for name, path in extracted.items():
            if name.startswith("data/"):
                target = data_dir / name.removeprefix("data/")
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.replace(path, target)
                files += 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress("verifying the audit hash chain")
    verdict, head = _verify(settings)
    return Restored(manifest, files, verdict, head)


def _verify(settings: Settings) -> tuple[Verdict, tuple[int, str] | None]:
    chain = AuditChain(audit_chain_key(settings.audit.chain_key, settings.data_dir))
    engine = make_engine(settings.database_url())
    try:
        factory = make_session_factory(engine)
        verdict = verify_chain(factory, chain)
        with factory() as db:
            row = db.scalar(select(AuditChainHead).where(AuditChainHead.id == 1))
            head = None if row is None else (row.seq, row.hash)
        return verdict, head
    finally:
        engine.dispose()


__all__ = ["BackupError", "Restored", "create_backup", "data_files", "restore_backup"]
