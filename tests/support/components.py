"""Real external components started by the tests: Redis, PostgreSQL (a WakeDock server:
support/server.py)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.server import free_port, wait_port

REQUIRED = os.environ.get("WAKEDOCK_REQUIRE_INTEGRATION") == "1"


def unavailable(reason: str) -> None:
    """Skip on a developer laptop; fail in CI, where every component must be there."""
    if REQUIRED:
        pytest.fail(f"required integration component missing: {reason}")
    pytest.skip(reason)


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_redis() -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
        raise AssertionError  # unreachable
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return RedisServer(port, process)


@dataclass
class PostgresServer:
    port: int
    data_dir: Path
    bin_dir: Path
    as_user: list[str]
    counter: int = 0
    options: str = ""

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage); `resume` starts it again."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._pg_ctl("-l", str(self.data_dir.parent / "log"), "-w", "-o", self.options, "start")

    def _pg_ctl(self, *args: str) -> None:
        command = [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        subprocess.run(command, check=True, capture_output=True)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        self.counter += 1
        name = f"wd_test_{os.getpid()}_{self.counter}"
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start_postgres() -> PostgresServer:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = candidates[-1] if candidates else shutil.which("initdb")
    if not initdb:
        unavailable("PostgreSQL server binaries are not installed (apt-get install postgresql)")
        raise AssertionError
    bin_dir = Path(initdb).parent
    root = Path(tempfile.mkdtemp(prefix="wd-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the packaged `postgres` user.
        shutil.chown(root, "postgres")
        os.chmod(root, 0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    server = PostgresServer(
        port=port, data_dir=data, bin_dir=bin_dir, as_user=as_user, options=options
    )
    server.resume()
    return server
