"""A value the worker processes of one server share in memory, changed by any of them: "what
you cached may be stale". Reading it is a look at 8 bytes of a memory-mapped file in the
directory the parent made for this run (cluster/counters.py): no system call, no database.

A change writes 8 random bytes, so that every reader sees a value other than the one it last
saw, whatever other writers did meanwhile (no lost update, no lock).
"""

from __future__ import annotations

import mmap
import os
import secrets
from pathlib import Path

from wakedock.cluster.counters import shared_dir

SIZE = 8


class SharedEpoch:
    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)

    def read(self) -> bytes:
        return self._map[:SIZE]

    def change(self) -> bytes:
        """Set a new value (seen by every process at its next read); the value."""
        value = secrets.token_bytes(SIZE)
        self._map[:SIZE] = value
        return value


def shared_epoch(name: str) -> SharedEpoch | None:
    """The epoch `name` of this server's workers; None with one process."""
    directory = shared_dir()
    return None if directory is None else SharedEpoch(Path(directory) / f"{name}.epoch")
