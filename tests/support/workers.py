"""Which worker process of `wakedock serve` holds a connection: read from /proc (Linux), as
`ss -tnp` would show it. No pytest here (bench/ may use it too)."""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path

from support.server import WakeDockProcess

# Several workers start at once: on a busy machine they take longer than one server.
WORKERS_START = 240.0


def workers_of(parent: int) -> list[int]:
    """The worker processes `parent` runs now."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    try:
        return [int(pid) for pid in children.read_text().split()]
    except OSError:
        return []


def wait_workers(server: WakeDockProcess, count: int, timeout: float = WORKERS_START) -> list[int]:
    """The workers of `server`, once `count` of them answer (each seen holding a connection
    that got an answer to its liveness probe)."""
    deadline = time.monotonic() + timeout
    answered: set[int] = set()
    while time.monotonic() < deadline:
        pids = workers_of(server.process.pid)
        answered &= set(pids)
        if len(pids) == count and answered == set(pids):
            return pids
        conn = _connection(server)
        try:
            conn.request("GET", "/api/v1/health/live")
            if conn.getresponse().read() and conn.sock is not None:
                port = conn.sock.getsockname()[1]
                for pid, ports in connections_by_worker(pids, server.port).items():
                    if port in ports:
                        answered.add(pid)
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()
    raise TimeoutError(f"{count} workers not answering:\n{server.log()[-3000:]}")


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _established(server_port: int) -> dict[str, int]:
    """Inode -> the client's port, of the established connections accepted on `server_port`."""
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == server_port:
                found[inode] = int(remote.rsplit(":", 1)[1], 16)
    return found


def connections_by_worker(workers: list[int], server_port: int) -> dict[int, set[int]]:
    """For each worker, the client ports of the connections it holds on `server_port`."""
    established = _established(server_port)
    return {
        pid: {established[i] for i in _socket_inodes(pid) if i in established} for pid in workers
    }


def connection_per_worker(
    server: WakeDockProcess, workers: list[int], host: str | None = None
) -> dict[int, http.client.HTTPConnection]:
    """One kept-alive connection held by each worker (new ones until each has one), after one
    `GET /` (on `host`) or liveness probe (on the admin host) that answered 200."""
    found: dict[int, http.client.HTTPConnection] = {}
    for _ in range(100):
        conn = _connection(server)
        if host is None:
            conn.request("GET", "/api/v1/health/live")
        else:
            conn.request("GET", "/", headers={"Host": host})
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise AssertionError(f"{reply.status}: {body!r}")
        port = conn.sock.getsockname()[1]
        owners = connections_by_worker(workers, server.port)
        owner = next((pid for pid, ports in owners.items() if port in ports), None)
        if owner is not None and owner not in found:
            found[owner] = conn
        else:
            conn.close()
        if len(found) == len(workers):
            return found
    raise AssertionError(f"the connections never reached every worker: {list(found)}")


def _connection(server: WakeDockProcess) -> http.client.HTTPConnection:
    if server.https:
        return http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=server.ssl_context(), timeout=60
        )
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
