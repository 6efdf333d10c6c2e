"""`wakedock socket-proxy` as a subprocess on a unix socket in a temporary directory, and what
it logged: the tests talk to the engine through it as WakeDock (and an attacker) would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SocketProxy:
    socket_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def refusals(self) -> list[dict[str, Any]]:
        """The structured refusal lines logged so far."""
        found = []
        for line in self.log().splitlines():
            start = line.find('{"event": "socket_proxy_refused"')
            if start >= 0:
                found.append(json.loads(line[start:]))
        return found

    def raw(self, data: bytes) -> bytes:
        """Send `data` as is on a new connection; the whole answer (the proxy then closes)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(30)
            conn.connect(str(self.socket_path))
            conn.sendall(data)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def answers_ping(path: Path) -> bool:
    """An Engine API (Docker's, Podman's, the proxy's) answers `/_ping` on this unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(path))
            conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_socket_proxy(directory: Path, *arguments: str) -> Iterator[SocketProxy]:
    """Run the proxy (the real CLI) until the generator is closed."""
    path = directory / "docker.sock"
    log_path = directory / "socket-proxy.log"
    command = [sys.executable, "-m", "wakedock.cli", "socket-proxy", "--listen", str(path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, *arguments], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
    try:
        deadline = time.monotonic() + 90
        while not answers_ping(path):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"socket-proxy did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield SocketProxy(path, log_path, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
