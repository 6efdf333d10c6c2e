"""Events recorded on their own (`record_alone`) by concurrent callers share one transaction.

Each event in a transaction of its own would hold a chain's lock through its commit (a WAL
flush), so appends from many threads would run one commit at a time. Here the first caller
to find no batch being written becomes the writer: it takes every event waiting (its own
included), chains them in one transaction and commits; the others sleep until the batch that
holds their event has committed, then return. A caller therefore returns only once its event
is committed, and a failed batch rolls back whole: every caller in it gets the error and none
of its events is stored. Nothing runs in the background.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.append import append_committed
from wakedock.audit.chain import ChainedFields

# A bound on one group commit's transaction; more waiting events go in the next one.
_MAX_BATCH = 500
# How long a group commit's writer waits for the callers its previous batch released.
_GATHER = 0.002


def _held() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Pending:
    """One caller's event waiting for the group commit that records it."""

    content: ChainedFields
    seq: int | None = None
    error: BaseException | None = None
    done: bool = False
    # Set when the writer's role was handed to this caller (its event not yet written).
    handed: bool = False
    # Held until this caller is to wake: its batch is done, or the writer's role is its. One
    # lock per caller: waking it costs one release, and it need not take a shared lock again.
    wake: threading.Lock = field(default_factory=_held)


class GroupCommit:
    """The group commit of one database (one session factory) in this process.

    Callers released by a commit often record again at once (a burst of denials, a scanner).
    So that they share the next commit instead of alternating between two half batches, the
    writer waits for as many events as its previous batch held, at most `_GATHER` seconds (as
    PostgreSQL's commit_delay does); a lone caller after a lone caller writes at once.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._arrived = threading.Condition(self._guard)  # as many events as wanted wait
        self._waiting: list[_Pending] = []
        self._writing = False
        self._wanted = 0  # while the writer gathers: how many waiting events it waits for
        self._last_batch = 1

    def record(self, factory: sessionmaker[Session], content: ChainedFields) -> int:
        """Append `content` in a batch of concurrent callers' events: its seq, once committed."""
        mine = _Pending(content)
        with self._guard:
            self._waiting.append(mine)
            writer = not self._writing
            self._writing = True
            if self._wanted and len(self._waiting) >= self._wanted:
                self._arrived.notify()
        if not writer:
            try:
                mine.wake.acquire()
            except BaseException:
                self._abandon(mine)
                raise
        if not mine.done:  # the writer's role is this caller's
            self._write_until_done(factory, mine)
        if mine.error is not None:
            raise mine.error
        return cast(int, mine.seq)

    def _write_until_done(self, factory: sessionmaker[Session], mine: _Pending) -> None:
        try:
            while not mine.done:
                with self._guard:
                    batch = self._take()
                self._write(factory, batch)
        except BaseException:
            with self._guard:
                if mine in self._waiting:  # interrupted: no later batch takes this event
                    self._waiting.remove(mine)
            raise
        finally:
            self._hand_on()

    def _take(self) -> list[_Pending]:
        """The next batch, oldest first (called holding the guard, as the writer)."""
        wanted = min(self._last_batch, _MAX_BATCH)
        if len(self._waiting) < wanted:
            deadline = time.monotonic() + _GATHER
            self._wanted = wanted
            try:
                while len(self._waiting) < wanted:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._arrived.wait(left)
            finally:
                self._wanted = 0
        batch = self._waiting[:_MAX_BATCH]
        del self._waiting[:_MAX_BATCH]
        self._last_batch = len(batch)
        return batch

    def _write(self, factory: sessionmaker[Session], batch: list[_Pending]) -> None:
        seqs: list[int] = []
        error: BaseException | None = None
        try:
            seqs = append_committed(factory, [pending.content for pending in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            error = exc
        for index, pending in enumerate(batch):
            if error is None:
                pending.seq = seqs[index]
            else:
                pending.error = error
            pending.done = True
            pending.wake.release()

    def _hand_on(self) -> None:
        """The writer leaves: the oldest waiting caller becomes the writer, if any waits."""
        with self._guard:
            if self._waiting:
                following = self._waiting[0]
                following.handed = True
                following.wake.release()
            else:
                self._writing = False

    def _abandon(self, mine: _Pending) -> None:
        # Interrupted while waiting: no later batch takes this event (one that already took it
        # may still commit, as after a crash past a commit); a writer's role handed to this
        # caller goes on to the next one.
        with self._guard:
            if mine in self._waiting:
                self._waiting.remove(mine)
            if not mine.handed or mine.done:
                return
            if self._waiting:
                following = self._waiting[0]
                following.handed = True
                following.wake.release()
            else:
                self._writing = False


# One group commit per session factory (one database); weak, so a disposed factory goes.
_GROUPS: weakref.WeakKeyDictionary[sessionmaker[Session], GroupCommit] = weakref.WeakKeyDictionary()
_GROUPS_GUARD = threading.Lock()


def group_of(factory: sessionmaker[Session]) -> GroupCommit:
    """The group commit of `factory`'s database in this process."""
    with _GROUPS_GUARD:
        group = _GROUPS.get(factory)
        if group is None:
            group = _GROUPS[factory] = GroupCommit()
        return group
