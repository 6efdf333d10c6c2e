"""Real external components started by the tests: Redis, PostgreSQL, a WakeDock server."""

from __future__ import annotations

import glob
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRED = os.environ.get("WAKEDOCK_REQUIRE_INTEGRATION") == "1"


def unavailable(reason: str) -> None:
    """Skip on a developer laptop; fail in CI, where every component must be there."""
    if REQUIRED:
        pytest.fail(f"required integration component missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


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


@dataclass
class WakeDockProcess:
    """`wakedock serve` running as a real subprocess."""

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    https: bool
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert_path))
        return context

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def wakedock_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wakedock.cli", *args]


FAST_HASH_ENV = {
    "WAKEDOCK_AUTH__ARGON2_MEMORY_KIB": "19456",
    "WAKEDOCK_AUTH__ARGON2_TIME_COST": "2",
    "WAKEDOCK_AUTH__ARGON2_PARALLELISM": "1",
}


def run_cli(
    data_dir: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "WAKEDOCK_DATA_DIR": str(data_dir), **FAST_HASH_ENV, **(env or {})}
    return subprocess.run(
        wakedock_command(*args),
        input=stdin,
        text=True,
        capture_output=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def _file_limit(open_files: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    return limit


@contextmanager
def wakedock_server(
    data_dir: Path,
    *,
    https: bool = True,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    open_files: int | None = None,
) -> Iterator[WakeDockProcess]:
    """`open_files`: the server's RLIMIT_NOFILE (soft and hard), e.g. to make it small."""
    port = free_port()
    full_env = {
        **os.environ,
        "WAKEDOCK_DATA_DIR": str(data_dir),
        # The OWASP minimum argon2 cost keeps subprocess tests quick.
        **FAST_HASH_ENV,
        **(env or {}),
    }
    args = ["serve", "--port", str(port), "--log-level", "warning", *extra_args]
    if not https:
        args.append("--insecure-http")
    log_path = data_dir.parent / f"wakedock-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            wakedock_command(*args),
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else _file_limit(open_files),
        )
    server = WakeDockProcess(port, data_dir, process, https, log_path, full_env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"wakedock serve exited early:\n{server.log()}")
            try:
                context = server.ssl_context() if https else None
                with urllib.request.urlopen(
                    f"{server.base_url}/api/v1/health/live", timeout=2, context=context
                ) as response:
                    if response.status == 200:
                        break
            except (OSError, ssl.SSLError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not ready:\n{server.log()}") from None
                time.sleep(0.1)
        yield server
    finally:
        server.stop()
