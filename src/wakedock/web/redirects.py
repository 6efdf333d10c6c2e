"""Where a redirect after sign-in may go: a path on the same host, nothing else."""

from __future__ import annotations


def local_path(target: str | None) -> str:
    """`target` when it is a path on this host; `/` for //evil, https://evil, backslashes."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
