"""The chain's check run from the admin console: `wakedock audit verify`'s own walk
(audit/verify.py), in a background thread, one at a time, its progress and last result kept.

The result lives in this process (a restart forgets it; the audit trail keeps every run: an
`audit_verify` event when it starts and one with its result, critical when the chain is broken).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import AuditChain
from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.models import AuditChainHead
from wakedock.audit.service import Auditor
from wakedock.audit.verify import Verdict, verify_chain
from wakedock.clock import Clock
from wakedock.context import RequestContext

log = logging.getLogger("wakedock.audit")
# How often the walk reports how far it got: often enough for a bar that moves.
PROGRESS_EVERY = 1_000


@dataclass(frozen=True)
class ChainCheck:
    """One run of the check: while it runs `verdict` is None and `checked` grows to `total`."""

    started_at: datetime
    started_by: str | None
    total: int
    checked: int = 0
    finished_at: datetime | None = None
    verdict: Verdict | None = None

    @property
    def running(self) -> bool:
        return self.verdict is None


@dataclass(frozen=True)
class ChainState:
    """What the console shows of the chain: its head and the latest check (None: none yet)."""

    head_seq: int
    base_seq: int
    check: ChainCheck | None


class ChainChecks:
    """Runs the check in the background, never two at once, and remembers the latest run."""

    def __init__(
        self, factory: sessionmaker[Session], chain: AuditChain, clock: Clock, auditor: Auditor
    ) -> None:
        self._factory = factory
        self._chain = chain
        self._clock = clock
        self._auditor = auditor
        self._lock = threading.Lock()
        self._latest: ChainCheck | None = None
        self._thread: threading.Thread | None = None

    def state(self) -> ChainState:
        """The head's seq and the latest check (blocking: reads the head row)."""
        with self._factory() as db:
            head = db.get(AuditChainHead, 1)
        with self._lock:
            latest = self._latest
        if head is None:
            return ChainState(0, 0, latest)
        return ChainState(head.seq, head.base_seq, latest)

    def start(self, context: RequestContext) -> bool:
        """Start a check unless one is running (False then). Audited; blocking."""
        with self._lock:
            if self._latest is not None and self._latest.running:
                return False
            # Recorded first, so the walk covers the event that says who asked for it.
            self._auditor.record(Event(EventType.AUDIT_VERIFY, details={"step": "start"}), context)
            total = self._head()
            self._latest = ChainCheck(self._clock.now(), context.actor, total)
            self._thread = threading.Thread(
                target=self._run, args=(context,), name="audit-verify", daemon=True
            )
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> None:
        """Until the running check (if any) is done: for tests and shutdown."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _head(self) -> int:
        with self._factory() as db:
            head = db.get(AuditChainHead, 1)
        return 0 if head is None else max(0, head.seq - head.base_seq)

    def _progress(self, checked: int) -> None:
        with self._lock:
            if self._latest is not None:
                self._latest = replace(self._latest, checked=checked)

    def _run(self, context: RequestContext) -> None:
        try:
            verdict = verify_chain(self._factory, self._chain, self._progress, every=PROGRESS_EVERY)
        except Exception as exc:  # a database outage: say the check did not finish
            log.exception("the audit chain check failed")
            verdict = Verdict(0, f"the check could not finish ({type(exc).__name__})")
        with self._lock:
            if self._latest is not None:
                self._latest = replace(
                    self._latest,
                    checked=verdict.checked,
                    finished_at=self._clock.now(),
                    verdict=verdict,
                )
        result = Event(
            EventType.AUDIT_VERIFY,
            outcome=Outcome.SUCCESS if verdict.ok else Outcome.FAILURE,
            severity=None if verdict.ok else Severity.CRITICAL,
            details={
                "step": "result",
                "checked": verdict.checked,
                "problem": verdict.problem,
                "seq": verdict.seq,
            },
        )
        try:
            self._auditor.record(result, context)
        except Exception:  # the verdict is still shown; the outage is logged
            log.exception("the audit chain check's result could not be recorded")
