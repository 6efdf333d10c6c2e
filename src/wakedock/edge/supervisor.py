"""`wakedock edge run`: nginx in the foreground, its configuration and certificate kept current,
nginx restarted if it dies, its WAF blocks read into the audit trail.

nginx runs as a child (`daemon off`), so stopping WakeDock's edge stops nginx. Every
`watch_seconds` (0.5 s) the supervisor reads a cheap marker of the services (their count and
latest update, start and stop) and a hash of the certificate and key; when either moves it
renders the configuration, checks it with `nginx -t` and reloads nginx (SIGHUP: new workers,
open connections finish on the old ones). A moving marker is read again until it holds still
for `settle_seconds`, so a burst of changes costs one reload. It also renders every
`poll_seconds` (5 s), which catches what the marker cannot see.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TypeVar

from wakedock.edge.audit_log_segment import ensure_exists, holds_open, remove_left_segments
from wakedock.edge.modsec_log import WafLogIngest
from wakedock.edge.presence import EdgePresence
from wakedock.edge.render import EdgeConfig, EdgeOptions, write_edge
from wakedock.edge.tls import CertificateRefused, check_pair
from wakedock.edge.upkeep import (
    Applied,
    children,
    kill_lingering,
    nginx_processes,
    quit_orphans,
    tls_fingerprint,
    write_applied,
)

log = logging.getLogger("wakedock.edge")
_T = TypeVar("_T")

# How long nginx's new workers may take to appear after a reload or a start (loading the CRS
# takes about a second on a busy machine).
CONFIRM_SECONDS = 15.0
# A marker that keeps moving is followed at most this long before rendering anyway.
SETTLE_LIMIT_SECONDS = 2.0


class EdgeFailed(Exception):
    """nginx refused the configuration or could not start."""


def nginx_command(nginx: Path, config: EdgeConfig, *extra: str) -> list[str]:
    options = config.options
    prefix = str(options.out_dir.absolute())
    # -e: the error log from the very start, before nginx reads the configuration (otherwise it
    # first opens the system's /var/log/nginx/error.log).
    error_log = f"{prefix}/logs/error.log"
    return [
        str(nginx),
        "-p",
        prefix,
        "-c",
        str(options.conf_path.absolute()),
        "-e",
        error_log,
        *extra,
    ]


def check_config(nginx: Path, config: EdgeConfig) -> None:
    """`nginx -t` on the written configuration; EdgeFailed with nginx's own words if refused.

    nginx loads the certificate and key while checking: a broken or mismatched pair fails here."""
    result = subprocess.run(  # noqa: S603 - a fixed binary and our own paths, no shell
        nginx_command(nginx, config, "-t", "-q"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise EdgeFailed(f"nginx refused the configuration:\n{result.stderr.strip()}")


@dataclass
class EdgeSupervisor:
    """Runs nginx with the rendered configuration until asked to stop (SIGTERM, SIGINT)."""

    render: Callable[[], EdgeConfig]
    ingest: WafLogIngest
    nginx: Path
    poll_seconds: float = 5.0
    progress: Callable[[str], None] = log.info
    # A cheap fingerprint of the services (a count and a few maxima, one query): when it moves
    # the configuration is rendered at once instead of at the next poll.
    services_marker: Callable[[], object] | None = None
    watch_seconds: float = 0.5
    settle_seconds: float = 0.2
    # nginx dying this many times in a row, each within `stable_seconds` of its start, ends the
    # supervisor with a failure (a service manager may then take over).
    max_quick_failures: int = 5
    stable_seconds: float = 30.0
    # The edge's registration (direct routes): made before the first render, released after
    # nginx exited, so `wakedock serve` waits the stop grace exactly while routes may exist.
    presence: EdgePresence | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.reloads = 0
        self.restarts = 0
        self.generation = 0
        self.applied: Applied | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._workers: set[int] = set()
        self._orphans: set[int] = set()
        self._marker: object = None
        self._tls = ""
        self._options: EdgeOptions | None = None
        # The written configuration has not been accepted yet: try again at the next render.
        self._unapplied = False
        # The last refusal logged (repeated only when it changes).
        self._refused: str | None = None

    @property
    def nginx_pid(self) -> int | None:
        """The running nginx master's pid."""
        return self._process.pid if self._process is not None else None

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._stop.set()

    def run(self) -> int:
        """Serve until stopped: 0 after a requested stop, non-zero when nginx kept dying."""
        if self.presence is not None:
            self.presence.start()
        try:
            return self._serve()
        finally:
            if self.presence is not None:
                self.presence.stop()

    def _serve(self) -> int:
        config = self._prepare()
        if threading.current_thread() is threading.main_thread():  # the CLI; a test stops it
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self.request_stop)
        self._spawn(config, "started")
        self.ingest.start()
        try:
            return self._supervise()
        finally:
            self._stop_nginx()
            kill_lingering(self._orphans)
            self.ingest.stop()
            self.progress(f"edge stopped; {self.ingest.recorded} WAF block(s) recorded")

    # The loop.

    def _supervise(self) -> int:
        next_poll = time.monotonic() + self.poll_seconds
        failures = 0
        while not self._stop.wait(self.watch_seconds):
            process = self._process
            if process is None or process.poll() is not None:
                failures = self._count_failure(failures)
                if failures >= self.max_quick_failures:
                    self.progress(
                        f"nginx died {failures} times within {self.stable_seconds:g} s of its "
                        "start: giving up"
                    )
                    return 1
                self._restart(failures)
                continue
            self._workers |= children(process.pid)
            reasons = []
            if self._marker_moved():
                reasons.append("services changed")
            tls = self._tls_now()
            if tls != self._tls:
                tls = self._settled(self._tls_now, tls)  # the key and the certificate, both
                reasons.append("certificate replaced")
            now = time.monotonic()
            if reasons or now >= next_poll:
                self._refresh(", ".join(reasons) or "poll", tls)
                next_poll = now + self.poll_seconds
        return 0

    def _marker_moved(self) -> bool:
        """The services' marker moved; once it has, it is followed until it holds still (the
        debounce), so the render that follows sees the whole burst."""
        marker = self._read_marker()
        if marker == self._marker:
            return False
        self._marker = self._settled(self._read_marker, marker)
        return True

    def _settled(self, read: Callable[[], _T], value: _T) -> _T:
        """`read()` again every `settle_seconds` until it returns the same value twice in a row
        (at most SETTLE_LIMIT_SECONDS): the value a burst of changes ends with."""
        deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
        while time.monotonic() < deadline and not self._stop.wait(self.settle_seconds):
            again = read()
            if again == value:
                break
            value = again
        return value

    def _read_marker(self) -> object:
        if self.services_marker is None:
            return None
        try:
            return self.services_marker()
        except Exception as exc:  # noqa: BLE001 - the database may be away: keep the last
            log.warning("edge: services marker unavailable: %s", exc)
            return self._marker

    def _tls_now(self) -> str:
        options = self._options
        return tls_fingerprint(options.cert, options.key) if options else ""

    # Rendering and reloading.

    def _prepare(self, check: bool = True) -> EdgeConfig:
        """Render, write and check: the configuration to start nginx with. A restart does not
        check (nginx starting parses it anyway, and says why on its standard error if it cannot:
        the restart then counts as a quick failure)."""
        self._marker = self._read_marker()
        config = self.render()
        write_edge(config)  # CertificateRefused: neither the configured pair nor a last good
        try:
            check_pair(config.options.cert, config.options.key)
        except CertificateRefused as exc:
            self.progress(f"{exc}: nginx starts with the last good certificate and key")
        # Before any nginx reads the configuration (`nginx -t` too): the audit log ModSecurity
        # could not open would be lost, silently (audit_log_segment.py).
        audit_log = config.options.audit_log
        ensure_exists(audit_log)
        if removed := remove_left_segments(audit_log):
            self.progress(
                f"removed {len(removed)} shared memory segment(s) an earlier nginx left at the "
                "audit log's key (ModSecurity would not have written its audit log)"
            )
        if check:
            check_config(self.nginx, config)
        self._options = config.options
        self._tls = tls_fingerprint(config.options.cert, config.options.key)
        return config

    def _refresh(self, reason: str, tls: str) -> None:
        tls_changed = tls != self._tls
        self._tls = tls  # a refused pair is tried again only once it changes again
        try:
            config = self.render()
            self._options = config.options
            if not (write_edge(config) or tls_changed or self._unapplied):
                return
            # A new certificate, or a configuration refused before, is checked first, for a
            # clear message. A services change is not: `nginx -t` parses the whole CRS again
            # (about a second on a busy machine), and nginx refuses a broken configuration on
            # reload by itself, keeping the old one; the check then explains why.
            if tls_changed:  # nginx would keep serving the last good pair: say so
                check_pair(config.options.cert, config.options.key)
            if tls_changed or self._unapplied:
                check_config(self.nginx, config)
        except Exception as exc:  # noqa: BLE001 - any failure: the running nginx keeps its last
            # good configuration (and certificate), and the next change or poll tries again.
            self._unapplied = True
            if tls_changed:
                self.progress(
                    f"the replaced certificate or key was refused; nginx keeps serving the "
                    f"previous one: {exc}"
                )
            elif str(exc) != self._refused:  # the same refusal is not logged at every poll
                self.progress(f"configuration not reloaded ({reason}): {exc}")
            self._refused = str(exc)
            return
        self._refused = None
        self._reload(config, reason)

    def _reload(self, config: EdgeConfig, reason: str) -> None:
        process = self._process
        if process is None:
            return
        before = children(process.pid)
        error_log = config.options.out_dir / "logs" / "error.log"
        offset = error_log.stat().st_size if error_log.exists() else 0
        process.send_signal(signal.SIGHUP)
        self.reloads += 1
        if self._confirm(process, before, (error_log, offset)):
            self._unapplied = False
            self._record(config, reason)
            self.progress(f"{reason}: nginx reloaded")
            return
        self._unapplied = True
        try:
            check_config(self.nginx, config)
            why = "no new workers (see logs/error.log)"
        except EdgeFailed as exc:
            why = str(exc)
        self.progress(f"{reason}: nginx kept its previous configuration: {why}")

    def _confirm(
        self,
        process: subprocess.Popen[bytes],
        before: set[int],
        error_log: tuple[Path, int] | None = None,
    ) -> bool:
        """nginx took the configuration: a worker that was not there before is running. False
        when nginx logs an `[emerg]` after `error_log`'s offset (a refused reload) or exits."""
        deadline = time.monotonic() + CONFIRM_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            workers = children(process.pid)
            if workers - before:
                self._workers |= workers
                return True
            if error_log is not None and _emergency_since(*error_log):
                return False
            if self._stop.wait(0.02):
                return False
        return False

    def _record(self, config: EdgeConfig, reason: str) -> None:
        self.generation += 1
        conf = config.options.conf_path.read_bytes()
        self.applied = Applied(
            generation=self.generation,
            applied_at=datetime.now(UTC).isoformat(),
            reason=reason,
            nginx_pid=self.nginx_pid or 0,
            config_sha256=hashlib.sha256(conf).hexdigest(),
            tls_sha256=self._tls,
            services_marker=repr(self._marker),
        )
        write_applied(config.options.out_dir, self.applied)

    # nginx's life.

    def _spawn(self, config: EdgeConfig, reason: str) -> None:
        process = subprocess.Popen(nginx_command(self.nginx, config))  # noqa: S603
        self._process = process
        self._started_at = time.monotonic()
        self._workers = set()
        if self._confirm(process, set()):
            if holds_open(process.pid, config.options.audit_log) is False:
                # The WAF would refuse requests that never reach the audit trail: no edge.
                self._stop_nginx()
                raise EdgeFailed(
                    f"nginx runs without ModSecurity's audit log ({config.options.audit_log}) "
                    "open: a System V shared memory segment at its key is in the way (ipcs -m; "
                    "docs/edge.md, 'The WAF's audit log')"
                )
            self._unapplied = False
            self._record(config, reason)
        self.progress(
            f"nginx (pid {process.pid}) serving {config.options.listen}, configuration in "
            f"{config.options.out_dir}"
        )

    def _count_failure(self, failures: int) -> int:
        lived = time.monotonic() - self._started_at
        return 1 if lived >= self.stable_seconds else failures + 1

    def _restart(self, failures: int) -> None:
        process = self._process
        if process is not None:
            self.progress(
                f"nginx (pid {process.pid}) died unexpectedly (status {process.returncode})"
            )
            out_dir = self._options.out_dir if self._options else Path(".")
            self._orphans |= quit_orphans(self._workers, process.pid, out_dir / "logs/error.log")
            self._process = None
        # At once the first time (a crash is rarely repeated), then 0.5 s doubling.
        delay = 0.1 if failures == 1 else min(30.0, 0.5 * 2 ** (failures - 2))
        self.progress(f"restarting nginx in {delay:g} s (failure {failures})")
        if self._stop.wait(delay):
            return
        self._started_at = time.monotonic()  # a failed start counts as a quick failure too
        try:
            config = self._prepare(check=False)
        except Exception as exc:  # noqa: BLE001 - reported; the next round tries again
            self.progress(f"nginx not restarted: {exc}")
            return
        self.restarts += 1
        self._spawn(config, "restarted")

    def _stop_nginx(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)  # graceful: finish the open requests
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            # Its workers would be orphaned, still holding the listening socket.
            error_log = self._options.out_dir / "logs/error.log" if self._options else None
            kill_lingering(self._workers | (nginx_processes(error_log) if error_log else set()))


def _emergency_since(error_log: Path, offset: int) -> bool:
    try:
        with error_log.open("rb") as file:
            file.seek(offset)
            return b"[emerg]" in file.read(1 << 20)
    except OSError:
        return False
