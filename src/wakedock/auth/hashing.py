"""The hashing pool: password and code checks run on a few dedicated threads.

argon2 is slow on purpose. Run on the shared worker pool, a burst of logins (each also waiting
for its per-username lock) would hold every worker thread and stall routes that have nothing to
do with logins, health checks included. A small capacity limiter keeps that burst in a queue.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request

# argon2 runs with one lane; a few more threads than cores hide short waits on locks.
HASHING_THREADS = 4
T = TypeVar("T")


def _pool(request: Request) -> anyio.CapacityLimiter:
    # Created on first use, inside the event loop (no await between the check and the set).
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "hashing_pool", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(HASHING_THREADS)
        request.app.state.hashing_pool = limiter
    return limiter


async def run_hashing(request: Request, func: Callable[..., T], *args: object) -> T:
    """Run a blocking call that verifies a password or code on the hashing pool."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=_pool(request))
