"""Anonymisers: a file of Tor exit nodes and VPN ranges the admin provides (WakeDock ships
none: such lists change daily and each has its own licence), one address or CIDR a line,
`#` comments allowed.

The file is read again when its size, modification time or inode changes (checked at most
every `check_seconds`), so a cron job that replaces it (write, then rename) takes effect
without a restart. A line that is not an address is reported (logged with its number, and in
`problems`) and skipped, never fatal: one typo must not drop the other thousands of entries. A
file that disappears keeps its last list (logged); it has to exist at start.

By default an entry is a decisive deny (the issue's "a Tor list entry is denied"); with
`deny=False` it only scores `SCORE`. Addresses in `exempt` (the network allow list) are not
denied by this signal, only scored.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from pathlib import Path

from wakedock.clock import Clock, SystemClock
from wakedock.zerotrust.base import Attempt, Decision, Finding
from wakedock.zerotrust.ranges import AddressRanges, IPNetwork

log = logging.getLogger(__name__)

SCORE = 60.0


def read_list(path: Path) -> tuple[AddressRanges, list[str]]:
    """The networks of the file, and one problem per line that is not one."""
    networks: list[IPNetwork] = []
    problems: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                # The line itself is not echoed: the file is the admin's, the log may be shared.
                problems.append(f"{path}:{number}: not an IP address or network, skipped")
    return AddressRanges(networks), problems


class AnonymiserSignal:
    name = "anonymiser"

    def __init__(
        self,
        path: Path,
        *,
        deny: bool = True,
        exempt: AddressRanges | None = None,
        check_seconds: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._path = path
        self._deny = deny
        self._exempt = exempt or AddressRanges()
        self._check_seconds = check_seconds
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        try:
            self._stamp = self._stat()
            self._ranges, self.problems = read_list(path)
        except OSError as exc:
            raise ValueError(
                f"zerotrust.anonymiser_file: cannot read {path}: {exc.strerror}"
            ) from None
        self._log_problems()
        self._checked_at = self._clock.monotonic()

    def __len__(self) -> int:
        return len(self._ranges)

    def weigh(self, attempt: Attempt) -> Finding | None:
        self._reload_if_changed()
        if attempt.address not in self._ranges:
            return None
        if self._deny and attempt.address not in self._exempt:
            return Finding(self.name, SCORE, "the address is on the anonymiser list (Tor, VPN)",
                           decisive=Decision.DENY)  # fmt: skip
        return Finding(self.name, SCORE, "the address is on the anonymiser list (Tor, VPN)")

    def _stat(self) -> tuple[int, int, int]:
        status = os.stat(self._path)
        return status.st_size, status.st_mtime_ns, status.st_ino

    def _reload_if_changed(self) -> None:
        now = self._clock.monotonic()
        if now - self._checked_at < self._check_seconds:
            return
        with self._lock:
            if now - self._checked_at < self._check_seconds:
                return
            self._checked_at = now
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return
                ranges, problems = read_list(self._path)
            except OSError as exc:
                log.warning("zerotrust.anonymiser_file %s: %s; keeping the last list (%d "
                            "entries)", self._path, exc.strerror, len(self._ranges))  # fmt: skip
                return
            self._ranges, self.problems, self._stamp = ranges, problems, stamp
            log.info("zerotrust.anonymiser_file %s: %d entries", self._path, len(ranges))
            self._log_problems()

    def _log_problems(self) -> None:
        for problem in self.problems:
            log.warning("zerotrust.anonymiser_file %s", problem)
