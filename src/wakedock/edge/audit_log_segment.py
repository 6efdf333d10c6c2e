"""ModSecurity's audit log and the System V shared memory segment keyed on it.

libmodsecurity 3.0.x (Debian 12's) opens its audit log with a shared memory segment at the
file's `ftok(path, 1)` key, sized for the path, and nothing removes that segment when nginx
exits. ftok keeps 16 bits of the file's inode: a later audit log whose key is a left segment's,
and whose path is longer, is refused the segment (EINVAL), and ModSecurity then writes no audit
log at all, saying nothing. The WAF still refuses requests; none of them reaches WakeDock's
audit trail. So, before nginx reads its configuration, a segment at the audit log's key that no
process is attached to is removed (`remove_left_segments`), and once nginx runs, the edge
checks that nginx holds its audit log open (`holds_open`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_LIBC.ftok.argtypes = [ctypes.c_char_p, ctypes.c_int]
_LIBC.ftok.restype = ctypes.c_int
_LIBC.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_LIBC.shmctl.restype = ctypes.c_int
_IPC_RMID = 0
# ModSecurity's project id for its files' keys (src/utils/shared_files.cc).
_PROJECT = 1
_SEGMENTS = Path("/proc/sysvipc/shm")


def ensure_exists(path: Path) -> None:
    """The audit log created (0600) if it is not there: its key needs the file."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))


def left_segments(path: Path) -> list[int]:
    """The ids of the segments at `path`'s key that no process is attached to."""
    key = _LIBC.ftok(str(path).encode(), _PROJECT)
    if key == -1:
        return []
    try:
        lines = _SEGMENTS.read_text().splitlines()[1:]
    except OSError:
        return []  # not Linux, or /proc not mounted: nothing to look at
    found = []
    for line in lines:
        # key shmid perms size cpid lpid nattch ...
        fields = line.split()
        if len(fields) > 6 and int(fields[0]) == key and int(fields[6]) == 0:
            found.append(int(fields[1]))
    return found


def remove_left_segments(path: Path) -> list[int]:
    """Remove the segments `left_segments` names: the ids removed."""
    removed = []
    for segment in left_segments(path):
        if _LIBC.shmctl(segment, _IPC_RMID, None) == 0:
            removed.append(segment)
    return removed


def holds_open(pid: int, path: Path) -> bool | None:
    """Whether process `pid` has `path` open (the same file); None if that cannot be read."""
    try:
        wanted = path.stat()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                held = fd.stat()
            except OSError:
                continue  # closed meanwhile
            if (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino):
                return True
    except OSError:
        return None
    return False
