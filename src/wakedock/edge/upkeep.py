"""What the edge's supervisor watches and leaves behind: the certificate's fingerprint, nginx's
worker processes, and the record of the last configuration nginx accepted (`applied.json`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

APPLIED_NAME = "applied.json"


def tls_fingerprint(cert: Path, key: Path) -> str:
    """A hash of the certificate's and the key's contents ("missing" for an unreadable file):
    a replaced file, however it was replaced (rename, copy, a symlink moved), changes it."""
    digest = hashlib.sha256()
    for path in (cert, key):
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (nginx's workers, for its master)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return {int(child) for child in text.split()}
    except FileNotFoundError:
        pass  # the master is gone, or a kernel without CONFIG_PROC_CHILDREN: read every process
    except OSError:
        return set()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == pid:
            found.add(int(entry.name))
    return found


def _stat(pid: int) -> tuple[str, int] | None:
    """(command name, parent pid) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ")".
    name = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 2 :].split()
    return name, int(fields[1])


def _parent(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def quit_orphans(workers: set[int], dead_master: int, error_log: Path) -> set[int]:
    """Ask the workers of a master that died to stop (SIGQUIT: they close the listening socket at
    once, so a new master can bind it, and finish their open requests). The workers are those
    seen as the master's children, and any nginx process writing to this edge's error log (a
    worker forked after the last look). Only processes that are still nginx and no longer the
    dead master's children are signalled, so a recycled pid is left alone. The pids signalled."""
    signalled = set()
    for pid in workers | nginx_processes(error_log):
        stat = _stat(pid)
        if stat is None or stat[0] != "nginx" or stat[1] == dead_master:
            continue
        try:
            os.kill(pid, signal.SIGQUIT)
        except OSError:
            continue
        signalled.add(pid)
    return signalled


def nginx_processes(error_log: Path) -> set[int]:
    """nginx processes whose standard error is `error_log` (nginx -e points it there)."""
    target = str(error_log.absolute())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "nginx" and os.readlink(
                entry / "fd" / "2"
            ) == target:
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def kill_lingering(pids: set[int]) -> None:
    """SIGKILL the orphaned workers still running when the supervisor stops."""
    for pid in pids:
        stat = _stat(pid)
        if stat is not None and stat[0] == "nginx":
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class Applied:
    """The configuration nginx is serving, as `applied.json` in the output directory says.

    Written after nginx started or accepted a reload (its new workers are running): a caller
    that changed a service waits for `services_marker` to move, or for a later `applied_at`."""

    generation: int
    # ISO 8601, UTC.
    applied_at: str
    reason: str
    nginx_pid: int
    config_sha256: str
    tls_sha256: str
    services_marker: str


def write_applied(out_dir: Path, applied: Applied) -> None:
    target = out_dir / APPLIED_NAME
    partial = target.with_name(target.name + ".new")
    partial.write_text(json.dumps(asdict(applied), indent=1) + "\n")
    partial.replace(target)


def read_applied(out_dir: Path) -> Applied | None:
    """The last applied configuration, None before nginx first started."""
    try:
        return Applied(**json.loads((out_dir / APPLIED_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None
