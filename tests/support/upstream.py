"""The proxy tests' upstream app (tests/support/apps/testapp.py) run as a local process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APP = Path(__file__).parent / "apps" / "testapp.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_upstream(**env: str) -> Iterator[int]:
    """Run the test app on 127.0.0.1:<free port>; yields the port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-u", str(APP)],
        env={**os.environ, "PORT": str(port), "BIND": "127.0.0.1", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)
