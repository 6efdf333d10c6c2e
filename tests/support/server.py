"""`wakedock serve` and the `wakedock` CLI as real subprocesses: one helper for the tests and
for bench/ (which puts tests/ on its path). No pytest here: the benchmarks run without it.

Every address is 127.0.0.1.
"""

from __future__ import annotations

import os
import resource
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
# The OWASP minimum argon2 cost keeps subprocess tests quick (bench/ measures the defaults).
FAST_HASH_ENV = {
    "WAKEDOCK_AUTH__ARGON2_MEMORY_KIB": "19456",
    "WAKEDOCK_AUTH__ARGON2_TIME_COST": "2",
    "WAKEDOCK_AUTH__ARGON2_PARALLELISM": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout}s")


def wakedock_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wakedock.cli", *args]


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
        return f"{'https' if self.https else 'http'}://{HOST}:{self.port}"

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def ssl_context(self) -> ssl.SSLContext:
        # The generated self-signed certificate is its own CA and names 127.0.0.1: full checks.
        return ssl.create_default_context(cafile=str(self.cert_path))

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


def _file_limit(open_files: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    return limit


@contextmanager
def serve(
    data_dir: Path,
    env: dict[str, str],
    *,
    https: bool = True,
    host: str | None = None,
    extra_args: tuple[str, ...] = (),
    open_files: int | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 60,
) -> Iterator[WakeDockProcess]:
    """`wakedock serve` on a free port with exactly `env`, once it answers its liveness probe
    on 127.0.0.1 (within `ready_timeout` seconds); stopped on exit. `host`: --host (default:
    the configured one, 127.0.0.1 out of the box). `open_files`: its RLIMIT_NOFILE (soft and
    hard)."""
    port = free_port()
    listen = ("--host", host) if host is not None else ()
    args = ["serve", *listen, "--port", str(port), "--log-level", "warning", *extra_args]
    if not https:
        args.append("--insecure-http")
    log_path = log_path or data_dir.parent / f"wakedock-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            wakedock_command(*args),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else _file_limit(open_files),
        )
    server = WakeDockProcess(port, data_dir, process, https, log_path, env)
    try:
        _wait_ready(server, ready_timeout)
        yield server
    finally:
        server.stop()


def _wait_ready(server: WakeDockProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"wakedock serve exited early:\n{server.log()}")
        try:
            context = server.ssl_context() if server.https else None
            with urllib.request.urlopen(
                f"{server.base_url}/api/v1/health/live", timeout=2, context=context
            ) as response:
                if response.status == 200:
                    return
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready:\n{server.log()}") from None
            time.sleep(0.1)


def server_env(data_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment, the data directory, the quick argon2 cost, then `env`."""
    return {**os.environ, "WAKEDOCK_DATA_DIR": str(data_dir), **FAST_HASH_ENV, **(env or {})}


@contextmanager
def wakedock_server(
    data_dir: Path,
    *,
    https: bool = True,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    open_files: int | None = None,
    ready_timeout: float = 60,
) -> Iterator[WakeDockProcess]:
    """A server for a test: `serve` with `server_env(data_dir, env)`."""
    with serve(
        data_dir,
        server_env(data_dir, env),
        https=https,
        extra_args=extra_args,
        open_files=open_files,
        ready_timeout=ready_timeout,
    ) as server:
        yield server


def run_cli(
    data_dir: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`wakedock <args>` on `data_dir`, with `server_env`; its output as text."""
    return subprocess.run(
        wakedock_command(*args),
        input=stdin,
        text=True,
        capture_output=True,
        env=server_env(data_dir, env),
        timeout=120,
        check=False,
    )
