"""Several worker processes on one listening socket (server.workers > 1).

The parent binds the socket once and starts each worker as a fresh `wakedock serve` process
that inherits it (so every worker builds its own database engines, thread pools and event
loop: nothing is shared by a fork). The kernel spreads the connections over the workers that
accept on it. The parent restarts a worker that dies (at once, or after a growing pause if it
keeps dying at start-up), and on SIGTERM or SIGINT asks every worker to stop gracefully
(finishing the requests in progress), waits for them, and exits.

The workers' request counters are summed over one directory the parent makes for this run
and removes at its end (cluster/counters.py): a scrape of `/metrics` on any worker reports them
all, a dead worker's counts included.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from wakedock.cluster.counters import SHARED_DIR

log = logging.getLogger("wakedock.server")

# How a worker learns it is one: the inherited socket's descriptor, and the first-admin setup
# token's digest and expiry (auth/setup_token.py) when one was printed.
WORKER_FD = "WAKEDOCK_WORKER_FD"
SETUP_TOKEN = "WAKEDOCK_WORKER_SETUP_TOKEN"  # noqa: S105 - the variable's name
# A worker that dies sooner than this after its start is restarted after a growing pause.
_EARLY_DEATH_SECONDS = 10.0
_MAX_PAUSE_SECONDS = 30.0
# How long a graceful stop may take before the workers left are killed.
_STOP_GRACE_SECONDS = 30.0


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket, bound once for every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def inherited() -> socket.socket | None:
    """In a worker: the socket its parent bound; None in any other process.

    A worker whose parent died (killed, so it could not stop its workers) stops itself
    gracefully within a second: no worker outlives its parent.
    """
    fd = os.environ.pop(WORKER_FD, None)
    if fd is None:
        return None
    parent = os.getppid()
    threading.Thread(target=_follow_parent, args=(parent,), name="parent", daemon=True).start()
    return socket.socket(fileno=int(fd))


def _follow_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    started: float
    early_deaths: int = 0


class Supervisor:
    def __init__(
        self, count: int, sock: socket.socket, argv: Sequence[str], env: dict[str, str]
    ) -> None:
        self._count = count
        self._sock = sock
        self._command = [sys.executable, "-c", "from wakedock.cli import main; main()", *argv]
        self._env = {**env, WORKER_FD: str(sock.fileno())}
        self._stopping: int | None = None

    def _start(self, early_deaths: int = 0) -> _Worker:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            self._command,
            env=self._env,
            pass_fds=(self._sock.fileno(),),
            # Its own process group: a Ctrl-C reaches the parent only, which passes it on once.
            process_group=0,
        )
        return _Worker(process, time.monotonic(), early_deaths)

    def _signalled(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = signum

    def run(self) -> int:
        """Run the workers until SIGTERM or SIGINT; the exit status."""
        # Private (0700), fresh for this run: the counters start at zero, as a server's do.
        shared = tempfile.mkdtemp(prefix="wakedock-shared-")
        self._env[SHARED_DIR] = shared
        try:
            return self._supervise()
        finally:
            shutil.rmtree(shared, ignore_errors=True)

    def _supervise(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._signalled)
        workers = [self._start() for _ in range(self._count)]
        log.info("started %d workers: %s", len(workers), [w.process.pid for w in workers])
        pauses: dict[int, float] = {}  # slot -> monotonic time of its next start
        while self._stopping is None:
            time.sleep(0.2)
            now = time.monotonic()
            for slot, worker in enumerate(workers):
                code = worker.process.poll()
                if code is None or self._stopping is not None:
                    continue
                if slot not in pauses:
                    early = now - worker.started < _EARLY_DEATH_SECONDS
                    deaths = worker.early_deaths + 1 if early else 0
                    pause = min(_MAX_PAUSE_SECONDS, 0.5 * 2**deaths) if early else 0.0
                    log.warning(
                        "worker %d exited with code %s; starting another%s",
                        worker.process.pid,
                        code,
                        f" in {pause:.1f} s" if pause else "",
                    )
                    pauses[slot] = now + pause
                    worker.early_deaths = deaths
                if now >= pauses[slot]:
                    del pauses[slot]
                    workers[slot] = self._start(worker.early_deaths)
                    log.info("worker %d started", workers[slot].process.pid)
        return self._stop(workers, self._stopping)

    def _stop(self, workers: list[_Worker], signum: int) -> int:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time: killed", worker.process.pid)
                worker.process.kill()
                worker.process.wait()
        self._sock.close()
        return 0
