"""Events recorded on their own (`record_alone`) by concurrent callers share one transaction, which
also chains the events recorded in callers' transactions that committed (audit/pending.py).

Each event in a transaction of its own would hold the chain head's lock through its commit (a
WAL flush), so appends from many threads would run one commit at a time. Here the first caller
to find no batch being written becomes the writer: it takes every event waiting (its own
included), and in one transaction chains first what waits in `audit_pending` (committed
already, oldest first), then the batch, and commits; the others sleep until the batch that
holds their event has committed, then return. A caller therefore returns only once its event
is committed, and a failed batch rolls back whole: every caller in it gets the error and none
of its events is stored (the waiting rows wait again). A caller with no event of its own (a
transaction that recorded events has committed, or a reader needs every event chained) joins
the same way and returns once a batch that started after it has committed. Nothing runs in the
background.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.append import append_in_turn, chain_of
from wakedock.audit.chain import CHAIN_INFO, AuditChain, ChainedFields
from wakedock.audit.pending import take_pending

log = logging.getLogger("wakedock.audit")

# A bound on one group commit's transaction; more waiting events go in the next one.
_MAX_BATCH = 500
# How long a group commit's writer waits for the callers its previous batch released.
_GATHER = 0.002
# How long a background writer waits for more commits before each batch (`_gather_commits`).
_COMMIT_GATHER = 0.005


def _held() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Pending:
    """One caller's event waiting for the group commit that records it (None: chain only)."""

    content: ChainedFields | None
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

    def __init__(self, chain: AuditChain) -> None:
        self._chain = chain
        self._guard = threading.Lock()
        self._arrived = threading.Condition(self._guard)  # as many events as wanted wait
        self._waiting: list[_Pending] = []
        self._writing = False
        self._wanted = 0  # while the writer gathers: how many waiting events it waits for
        self._last_batch = 1
        # A transaction that recorded events committed since the writer last took a batch:
        # the writer writes another batch (chaining them) before it leaves.
        self._chain_wanted = False
        # This process's transactions that stored waiting events and have not ended yet.
        self._in_flight = 0

    def record(self, engine: Engine, content: ChainedFields | None) -> int | None:
        """Append `content` in a batch of concurrent callers' events: its seq, once committed.

        With None: return once a batch that started after this call has chained every event
        that was waiting in `audit_pending` (None).
        """
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
            self._write_until_done(engine, mine)
        if mine.error is not None:
            raise mine.error
        return mine.seq

    def chain_committed(self, engine: Engine) -> None:
        """A transaction that recorded events has committed: have them chained.

        Alone (no other transaction of this process holding waiting events is open, no batch
        being written), the caller writes one batch and returns with its events chained. Under
        concurrent load it returns at once: the running writer writes one more batch before
        it leaves, or a background writer (`_write_in_background`) is started, which gathers
        the commits of a few milliseconds into each batch. Errors go to the log: the caller's
        work and its events are committed, and wait to be chained.
        """
        with self._guard:
            self._chain_wanted = True
            self._ended_holding_guard()
            if self._writing:
                return
            self._writing = True
            busy = self._in_flight > 0
        if busy:
            self._start_background(engine)
        else:
            self._write_until_done(engine, None, once=True)

    def transaction_began(self) -> None:
        """A transaction of this process stored its first waiting event."""
        with self._guard:
            self._in_flight += 1

    def transaction_ended(self) -> None:
        """A transaction that stored waiting events rolled back or was closed without commit."""
        with self._guard:
            self._ended_holding_guard()

    def _ended_holding_guard(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)

    def _write_until_done(
        self,
        engine: Engine,
        mine: _Pending | None,
        *,
        once: bool = False,
        background: bool = False,
    ) -> None:
        """Write batches until `mine` is done (`once`: one batch; `background`: until nothing
        asks for chaining any more), then leave (`_leave_holding_guard`)."""
        wrote = False
        try:
            while True:
                with self._guard:
                    done = mine.done if mine is not None else (wrote or not once)
                    keep_chaining = background and self._chain_wanted and not self._waiting
                    if done and not keep_chaining:
                        # Under the same guard as the test: a commit that asks for chaining
                        # from now on finds no writer and writes itself.
                        self._leave_holding_guard(engine)
                        return
                    if background and not self._waiting:
                        self._gather_commits()
                    batch = self._take()
                self._write(engine, batch)
                wrote = True
        except BaseException:
            with self._guard:
                if mine is not None and mine in self._waiting:  # no later batch takes it
                    self._waiting.remove(mine)
                self._leave_holding_guard(engine)
            raise

    def _gather_commits(self) -> None:
        """A background writer, before chaining only waiting events: wait `_COMMIT_GATHER`
        for more transactions to commit (holding the guard), so that a steady stream of
        commits is chained a few milliseconds' worth per batch rather than one or two, each
        costing about what a batch of fifty does. Nobody waits for it meanwhile; a caller
        recording alone (or a reader) that arrives ends the wait at once.
        """
        deadline = time.monotonic() + _COMMIT_GATHER
        self._wanted = 1
        try:
            while not self._waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
        finally:
            self._wanted = 0

    def _start_background(self, engine: Engine) -> None:
        """Hand the writer's role (already taken) to a new background writer."""
        # Not a daemon: a process that exits normally first chains what its transactions
        # committed (a few milliseconds); only a crash leaves them waiting for the next start.
        threading.Thread(
            target=self._write_in_background, args=(engine,), name="audit-chain", daemon=False
        ).start()

    def _write_in_background(self, engine: Engine) -> None:
        try:
            self._write_until_done(engine, None, background=True)
        except Exception:  # the events wait; the next commit or reader chains them
            log.warning("audit: chaining waiting events failed; they wait", exc_info=True)

    def _take(self) -> list[_Pending]:
        """The next batch, oldest first (called holding the guard, as the writer)."""
        self._chain_wanted = False  # this batch's transaction chains what committed before
        wanted = min(self._last_batch, _MAX_BATCH)
        if self._waiting and len(self._waiting) < wanted:
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
        self._last_batch = max(len(batch), 1)
        return batch

    def _write(self, engine: Engine, batch: list[_Pending]) -> None:
        seqs: list[int] = []
        error: BaseException | None = None
        contents = [pending.content for pending in batch if pending.content is not None]
        try:
            info = {CHAIN_INFO: self._chain}
            with Session(engine, expire_on_commit=False, info=info) as db, db.begin():
                waiting = take_pending(db)
                if waiting or contents:
                    seqs = append_in_turn(db, waiting + contents)
                    del seqs[: len(waiting)]
        except BaseException as exc:  # handed to every caller of the batch
            error = exc
            if not batch:
                log.warning("audit: chaining waiting events failed; they wait", exc_info=True)
        chained = iter(seqs)
        for pending in batch:
            if error is None:
                pending.seq = None if pending.content is None else next(chained)
            else:
                pending.error = error
            pending.done = True
            pending.wake.release()

    def _leave_holding_guard(self, engine: Engine) -> None:
        """The writer leaves: the oldest waiting caller becomes the writer, if any waits; else
        a background writer, if committed events are still to be chained."""
        if self._waiting:
            following = self._waiting[0]
            following.handed = True
            following.wake.release()
        elif self._chain_wanted:
            self._start_background(engine)
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


# One group commit per engine (one database) in this process; weak, so a disposed engine goes
# (a group holds its chain, never its engine).
_GROUPS: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_GROUPS_GUARD = threading.Lock()


def _group(engine: Engine, chain: AuditChain) -> GroupCommit:
    with _GROUPS_GUARD:
        group = _GROUPS.get(engine)
        if group is None:
            group = _GROUPS[engine] = GroupCommit(chain)
        return group


def group_of(factory: sessionmaker[Session]) -> GroupCommit:
    """The group commit of `factory`'s database in this process."""
    return _group(factory.kw["bind"], factory.kw["info"][CHAIN_INFO])


def record_in_group(factory: sessionmaker[Session], content: ChainedFields | None) -> int | None:
    """`GroupCommit.record` in the group commit of `factory`'s database."""
    return group_of(factory).record(factory.kw["bind"], content)


def group_for(session: Session) -> tuple[Engine, GroupCommit]:
    """The engine of `session` and the group commit of its database."""
    engine = session.get_bind()
    if not isinstance(engine, Engine):  # a session bound to a connection: its engine
        engine = engine.engine
    return engine, _group(engine, chain_of(session))
