"""Service files (compose, env, loading-page assets) under one root in the data directory.

Every path is checked before any file is opened: relative, no NUL or backslash, no empty, `.`
or `..` segment, no component that is a symbolic link, and the resolved path inside the root.
Encoded forms (`%2e%2e%2f`) arrive decoded and meet the same checks.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from wakedock.errors import InvalidInput, NotFound

MAX_FILE_BYTES = 1024 * 1024
_MAX_PATH = 512


class PathRefused(InvalidInput):
    code = "path_refused"


class FileTooLarge(InvalidInput):
    status_code = 413
    code = "file_too_large"


class FileStore:
    """Reads and writes files below `root`, and nowhere else."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _ensure_root(self) -> Path:
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self._root.resolve(strict=True)

    def resolve(self, relative: str) -> Path:
        """The absolute path of `relative` inside the root, or PathRefused saying why."""
        if not relative or len(relative) > _MAX_PATH:
            raise PathRefused("path is empty or too long")
        if "\x00" in relative or "\\" in relative:
            raise PathRefused("path contains a NUL byte or a backslash")
        if relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
            raise PathRefused("path must be relative to the service files root")
        parts = relative.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise PathRefused("path has an empty, '.' or '..' segment")
        root = self._ensure_root()
        current = root
        for part in parts:
            current = current / part
            # A symlink anywhere (even one pointing inside) is refused: no indirection at all.
            if current.is_symlink():
                raise PathRefused("path goes through a symbolic link")
        resolved = current.resolve(strict=False)
        if not resolved.is_relative_to(root):
            raise PathRefused("path escapes the service files root")
        return resolved

    def read(self, relative: str) -> bytes:
        path = self.resolve(relative)
        if not path.is_file():
            raise NotFound("no such file")
        # O_NOFOLLOW: a symlink swapped in after the check is not followed either.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]

    def write(self, relative: str, content: bytes) -> int:
        """Replace the file atomically (temporary file + rename); returns its size."""
        if len(content) > MAX_FILE_BYTES:
            raise FileTooLarge(f"files are limited to {MAX_FILE_BYTES} bytes")
        path = self.resolve(relative)
        if path.is_dir():
            raise PathRefused("path names a directory")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The parent was created under the root; check again that nothing swapped it.
        self.resolve(relative)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return len(content)
