"""The turn that orders this process's appends to one chain (a lane's, `AuditChain.take_lane`).

A plain `threading.Lock` hands itself to the thread that has waited, one after another: each
append then wakes the next thread and waits for the GIL behind it, two thread switches per
event. With threads that append in a loop (a server's workers) that convoy cost more of the
process's CPU than the chain (docs/benchmarks.md, "The turn without a convoy").

Here, as in Go's `sync.Mutex`, the turn released goes to whoever asks first: usually the thread
that released it, which still has the GIL, while the thread woken for it is still waking. A
woken thread that finds the turn taken waits again, in its place in the queue. So that no one
waits for ever behind threads that keep taking it again, a thread that has waited longer than
`patience` is handed the turn directly at the next release, before anyone else can take it.

A thread woken for a free turn that finds it taken again has switched for nothing, and made the
thread that took it wait for the GIL when it came back from its database. When the thread that
took it is the one that released it (a worker that appends in a loop), that happens at every
release: woken each time, a waiter switched in for nothing about once per two events, which cost
more CPU per event than the append's SQLite statements (docs/benchmarks.md, "A waiter woken
once"). So a waiter overtaken by the thread that released the turn and took it straight back is
not woken by that thread's releases again: it sleeps until its patience has run out (then it
takes the turn if it is free, or is handed it at the next release), unless another thread
releases the turn first. A waiter overtaken by another thread (one that came for the turn as it
was released) is woken at the next release, as before.
"""

from __future__ import annotations

import threading
import time
from collections import deque

# How long a queued thread may be overtaken before the turn is handed to it: a few appends.
PATIENCE = 0.01


class _Waiter:
    __slots__ = ("granted", "overtaken_by", "signalled", "since", "wake")

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.wake = threading.Lock()
        self.wake.acquire()  # held until a release wakes this waiter
        self.signalled = False
        self.granted = False
        # The thread that released the turn this waiter was woken for and took it straight back:
        # its releases do not wake this waiter for a free turn again.
        self.overtaken_by: int | None = None


class Turn:
    """A lock (acquire with a timeout, release) that favours throughput, with waits bounded.

    Any thread may release it (a turn kept until a transaction ends is released by the code
    that ends it, in the same thread in practice)."""

    def __init__(self, patience: float = PATIENCE) -> None:
        self._patience = patience
        self._guard = threading.Lock()
        self._held = False
        self._queue: deque[_Waiter] = deque()
        # The thread that last released the turn free.
        self._released_by: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the turn: True, or False if it was not had within `timeout` seconds.

        An exception anywhere in the wait (KeyboardInterrupt in the main thread is raised after
        any built-in call, not only in the blocking one) leaves nothing held and no one queued."""
        waiter: _Waiter | None = None
        try:
            with self._guard:
                if not self._held:
                    self._held = True
                    if self._queue and self._queue[0].signalled:
                        me = threading.get_ident()
                        if self._released_by == me:
                            # Taken straight back from under the waiter woken for it.
                            self._queue[0].overtaken_by = me
                    return True
                if not blocking:
                    return False
                waiter = _Waiter()
                self._queue.append(waiter)
            deadline = None if timeout < 0 else waiter.since + timeout
            while True:
                now = time.monotonic()
                remaining = -1.0 if deadline is None else max(0.0, deadline - now)
                napping = waiter.overtaken_by is not None
                if napping:
                    # Until its patience has run out, when a release hands the turn to it.
                    due = max(0.0, waiter.since + self._patience - now)
                    remaining = due if remaining < 0 else min(remaining, due)
                woken = waiter.wake.acquire(timeout=remaining)
                with self._guard:
                    waiter.signalled = False
                    if waiter.granted:
                        return True
                    if not self._held:
                        # Taken as its own: should the return be interrupted, `_leave` passes
                        # it on.
                        self._held = waiter.granted = True
                        self._queue.remove(waiter)
                        return True
                    if not woken:
                        if napping and (deadline is None or time.monotonic() < deadline):
                            # Its patience ran out: the next release hands it the turn.
                            waiter.overtaken_by = None
                            continue
                        self._queue.remove(waiter)
                        return False
                    # Overtaken while waking: back to waiting, in the same place.
        except BaseException:
            if waiter is not None:
                self._leave(waiter)
            raise

    def release(self) -> None:
        with self._guard:
            if not self._held:
                raise RuntimeError("release of a turn that is not held")
            if self._queue:
                first = self._queue[0]
                if time.monotonic() - first.since >= self._patience:
                    # Waited long enough: the turn is its own before anyone can take it.
                    self._queue.popleft()
                    first.granted = True
                    self._signal(first)
                    return
            self._held = False
            self._released_by = me = threading.get_ident()
            if self._queue and self._queue[0].overtaken_by != me:
                self._signal(self._queue[0])

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up: out of the queue, and a turn already handed to it, or a wake-up
        meant for it while the turn is free, goes to the next one."""
        with self._guard:
            if waiter in self._queue:
                self._queue.remove(waiter)
            granted = waiter.granted
            if not granted and not self._held and self._queue:
                self._signal(self._queue[0])
        if granted:
            self.release()

    def locked(self) -> bool:
        with self._guard:
            return self._held

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()

    @staticmethod
    def _signal(waiter: _Waiter) -> None:
        if not waiter.signalled:
            waiter.signalled = True
            waiter.wake.release()
