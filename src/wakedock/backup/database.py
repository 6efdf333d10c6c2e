"""The database half of a backup: a consistent snapshot out, a restore in.

SQLite is copied with the sqlite3 online backup API, never as a file: a live WAL database's
main file alone misses the committed pages still in the WAL. PostgreSQL is dumped by the real
`pg_dump --format=custom`, inside an exported snapshot from which the audit head is read too,
so the manifest's head is exactly the dump's.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
import subprocess  # nosec B404
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

Progress = Callable[[str], None]
SQLITE_PAGES_PER_STEP = 4096  # pages copied between two progress lines (16 MiB at 4 KiB)


class BackupError(Exception):
    """A backup or a restore cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Snapshot:
    """A database written to `path`, with what was true in it."""

    kind: str  # "sqlite" | "postgresql"
    path: Path
    audit_seq: int
    audit_hash: str
    schema_revision: str | None


def database_kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"cannot back up a {backend} database (SQLite or PostgreSQL only)")
    return backend


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("the SQLite database is in memory: there is nothing to back up")
    return Path(database)


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment that carries it (PGPASSWORD):
    a password on a command line is readable by every user of the host (`ps`)."""
    parsed = make_url(url).set(drivername="postgresql")
    env = {**os.environ}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def pg_tool(name: str) -> str:
    """The newest installed `pg_dump`/`pg_restore`: a dump needs a client at least as new as
    the server, and Debian installs each major version under /usr/lib/postgresql/<v>/bin."""
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
    found = candidates[-1] if candidates else shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found: install the PostgreSQL client (postgresql-client)")
    return found


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    # A fixed binary and an argument list, no shell.
    result = subprocess.run(  # noqa: S603  # nosec B603
        command, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise BackupError(f"{what} failed (exit {result.returncode}):\n{tail}")


def snapshot_sqlite(url: str, destination: Path, progress: Progress) -> Snapshot:
    source_path = sqlite_path(url)
    if not source_path.exists():
        raise BackupError(f"the database {source_path} does not exist")
    source = sqlite3.connect(source_path, timeout=30)
    target = sqlite3.connect(destination)
    try:

        def copied(_status: int, remaining: int, total: int) -> None:
            if total:
                progress(f"SQLite snapshot: {100 * (total - remaining) // total}% of {total} pages")

        source.backup(target, pages=SQLITE_PAGES_PER_STEP, progress=copied)
        # The copy is a plain rollback-journal file: nothing of it lives in a -wal beside it.
        target.execute("PRAGMA journal_mode=DELETE")
        seq, digest = _sqlite_head(target)
        revision = _scalar(target, "SELECT version_num FROM alembic_version")
    finally:
        target.close()
        source.close()
    return Snapshot("sqlite", destination, seq, digest, revision)


def _scalar(connection: sqlite3.Connection, query: str) -> str | None:
    try:
        row = connection.execute(query).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _sqlite_head(connection: sqlite3.Connection) -> tuple[int, str]:
    try:
        row = connection.execute("SELECT seq, hash FROM audit_chain_head WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        row = None
    return (0, "") if row is None else (int(row[0]), str(row[1]))


def snapshot_postgres(url: str, destination: Path, progress: Progress) -> Snapshot:
    target, env = libpq_target(url)
    pg_dump = pg_tool("pg_dump")
    with _exported_snapshot(target, env) as (snapshot_id, seq, digest, revision):
        progress(f"pg_dump --format=custom (snapshot {snapshot_id})")
        _run(
            [pg_dump, "--format=custom", f"--snapshot={snapshot_id}", "--no-owner",
             f"--file={destination}", f"--dbname={target}"],
            env, "pg_dump",
        )  # fmt: skip
    return Snapshot("postgresql", destination, seq, digest, revision)


@contextmanager
def _exported_snapshot(target: str, env: dict[str, str]) -> Iterator[tuple[str, int, str, str]]:
    """A REPEATABLE READ transaction kept open while pg_dump reads its exported snapshot."""
    password = env.get("PGPASSWORD")
    with psycopg.connect(target, password=password, autocommit=False) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            snapshot_id = str(_first(cur.fetchone()))
            cur.execute("SELECT to_regclass('audit_chain_head') IS NOT NULL")
            seq, digest = 0, ""
            if _first(cur.fetchone()):
                cur.execute("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
                row = cur.fetchone()
                if row is not None:
                    seq, digest = int(row[0]), str(row[1])
            cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            revision = ""
            if _first(cur.fetchone()):
                cur.execute("SELECT version_num FROM alembic_version")
                revision = str(_first(cur.fetchone()))
        yield snapshot_id, seq, digest, revision
        conn.rollback()


def _first(row: tuple[object, ...] | None) -> object:
    return None if row is None else row[0]


def holds_data(url: str) -> bool:
    """Whether the target database has any table (a WakeDock schema or anything else)."""
    if database_kind(url) == "sqlite":
        path = sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return False
        with sqlite3.connect(path) as conn:
            return bool(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
    target, env = libpq_target(url)
    with psycopg.connect(target, password=env.get("PGPASSWORD")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        return bool(row and row[0])


def restore_database(url: str, dump: Path, *, force: bool, progress: Progress) -> None:
    """Put the dump in the target database (`force`: replace what is there)."""
    if database_kind(url) == "sqlite":
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = path.with_name(path.name + ".restoring")
        shutil.copyfile(dump, staged)
        os.chmod(staged, 0o600)
        # A -wal/-shm left by the replaced database would be replayed onto the restored one.
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        os.replace(staged, path)
        return
    target, env = libpq_target(url)
    clean = ["--clean", "--if-exists"] if force else []
    progress("pg_restore into the target database")
    _run(
        [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
         "--single-transaction", *clean, f"--dbname={target}", str(dump)],
        env, "pg_restore",
    )  # fmt: skip
