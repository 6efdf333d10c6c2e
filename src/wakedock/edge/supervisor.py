"""`wakedock edge run`: nginx in the foreground, its configuration kept current, its WAF blocks
read into the audit trail.

nginx runs as a child (`daemon off`), so stopping WakeDock's edge stops nginx. The services are
read again every `poll_seconds`; when the rendered configuration differs, it is written, checked
with `nginx -t`, and nginx is told to reload (SIGHUP: new workers, open connections finish on
the old ones). Polling is the debounce: a burst of changes costs one reload per interval.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from wakedock.edge.modsec_log import WafLogIngest
from wakedock.edge.render import EdgeConfig, write_edge

log = logging.getLogger("wakedock.edge")


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
    """`nginx -t` on the written configuration; EdgeFailed with nginx's own words if refused."""
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

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.reloads = 0

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._stop.set()

    def run(self) -> int:
        """Serve until stopped; nginx's exit status (0 after a requested stop)."""
        config = self.render()
        write_edge(config)
        check_config(self.nginx, config)
        process = subprocess.Popen(nginx_command(self.nginx, config))  # noqa: S603
        self.progress(
            f"nginx (pid {process.pid}) serving {config.options.listen}, configuration in "
            f"{config.options.out_dir}"
        )
        if threading.current_thread() is threading.main_thread():  # the CLI; a test stops it
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self.request_stop)
        self.ingest.start()
        try:
            while not self._stop.wait(self.poll_seconds):
                if process.poll() is not None:
                    self.progress(f"nginx exited with status {process.returncode}")
                    return process.returncode or 1
                self._refresh(process)
            return 0
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)  # graceful: finish the open requests
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            self.ingest.stop()
            self.progress(f"edge stopped; {self.ingest.recorded} WAF block(s) recorded")

    def _refresh(self, process: subprocess.Popen[bytes]) -> None:
        try:
            config = self.render()
            if not write_edge(config):
                return
            check_config(self.nginx, config)
        except Exception as exc:  # noqa: BLE001 - any failure: the running nginx keeps its last
            # good configuration, and the next poll tries again.
            self.progress(f"configuration not reloaded: {exc}")
            return
        process.send_signal(signal.SIGHUP)
        self.reloads += 1
        self.progress("services changed: nginx reloaded")
