"""Where a redirect after sign-in may go: a path on the same host, nothing else."""

from __future__ import annotations

from urllib.parse import urlsplit

# Browsers drop tabs and newlines from URLs ("/\t/evil" becomes "//evil") and treat a backslash
# as a slash: a target holding any control character, space or backslash is not a plain path.
_NOT_IN_A_PATH = frozenset(chr(c) for c in (*range(0x21), 0x7F)) | {"\\"}


def local_path(target: str | None) -> str:
    """`target` when it is a path on this host; `/` for //evil, https://evil, "/\\t/evil",
    backslashes, control characters or anything that does not parse as a plain path."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(char in _NOT_IN_A_PATH for char in target):
        return "/"
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. an unbalanced "[" read as an IPv6 host
        return "/"
    if parts.scheme or parts.netloc:
        return "/"
    return target
