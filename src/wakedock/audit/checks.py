"""The chain's check as the admin console and the CLI run it: `wakedock audit verify`'s own walk
(audit/verify.py), its start and its result recorded as `audit_verify` events.

The console runs it in a background thread (`ChainChecks`). What the console shows is read from
where every worker sees the same thing: the last result from the audit trail (whoever ran the
check: any worker, the CLI; a restart forgets nothing), and whether a check runs from a lease
in the database (cluster/leases.py), which also keeps a second one from starting on another
worker. Only the progress of a running check is this process's own.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import AuditChain
from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.models import AuditChainHead, AuditEvent
from wakedock.audit.service import Auditor
from wakedock.audit.verify import Verdict, verify_chain
from wakedock.clock import Clock
from wakedock.cluster.leases import Leases, process_name
from wakedock.context import RequestContext

log = logging.getLogger("wakedock.audit")
# How often the walk reports how far it got: often enough for a bar that moves.
PROGRESS_EVERY = 1_000
# The lease held while a check runs: renewed as the walk moves, so a worker that died while
# checking frees it within LEASE_SECONDS.
LEASE = "audit-verify"
LEASE_SECONDS = 120.0
RENEW_SECONDS = 20.0
# How a result event's details read (audit/service.py serialises them with json's separators).
_RESULT_MARK = '"step": "result"'


def _started() -> Event:
    return Event(EventType.AUDIT_VERIFY, details={"step": "start"})


def _result(verdict: Verdict) -> Event:
    return Event(
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


def verify_recorded(
    factory: sessionmaker[Session],
    chain: AuditChain,
    auditor: Auditor,
    context: RequestContext,
    progress: Callable[[int], None] | None = None,
) -> Verdict:
    """`wakedock audit verify`: the walk, its start and result recorded as the console's are.

    An event that cannot be recorded (the chain's head row deleted, say) is logged; the walk's
    verdict is what matters and is still returned."""
    _record_or_log(auditor, _started(), context)
    verdict = verify_chain(factory, chain, progress)
    _record_or_log(auditor, _result(verdict), context)
    return verdict


def _record_or_log(auditor: Auditor, event: Event, context: RequestContext) -> None:
    try:
        auditor.record(event, context)
    except Exception as exc:  # noqa: BLE001 - the verdict is still given; the failure is said
        step = event.details["step"]
        log.warning("the audit chain check's %s could not be recorded: %s", step, exc)


@dataclass(frozen=True)
class ChainCheck:
    """A check running in this process: `checked` grows to `total`."""

    started_at: datetime
    started_by: str | None
    total: int
    checked: int = 0


@dataclass(frozen=True)
class CheckResult:
    """The result of a finished check, as its `audit_verify` event records it."""

    finished_at: datetime
    by: str | None
    verdict: Verdict


@dataclass(frozen=True)
class ChainState:
    """What the console shows of the chain: its head, the last recorded result (None: none in
    the trail), the check this process runs, and whether another process runs one."""

    head_seq: int
    base_seq: int
    last: CheckResult | None
    running: ChainCheck | None = None
    elsewhere: bool = False

    @property
    def busy(self) -> bool:
        return self.running is not None or self.elsewhere


def last_result(db: Session) -> CheckResult | None:
    """The newest `audit_verify` result in the trail, whoever ran the check."""
    row = db.execute(
        select(AuditEvent.occurred_at, AuditEvent.actor, AuditEvent.details)
        .where(AuditEvent.type == EventType.AUDIT_VERIFY.value)
        .where(AuditEvent.details.contains(_RESULT_MARK, autoescape=True))
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    details = json.loads(row.details)
    verdict = Verdict(
        int(details.get("checked") or 0), details.get("problem"), None, details.get("seq")
    )
    return CheckResult(row.occurred_at, row.actor, verdict)


class ChainChecks:
    """Runs the check in the background, one at a time across every worker sharing the
    database, and tells what the console shows of the chain."""

    def __init__(
        self, factory: sessionmaker[Session], chain: AuditChain, clock: Clock, auditor: Auditor
    ) -> None:
        self._factory = factory
        self._chain = chain
        self._clock = clock
        self._auditor = auditor
        self._leases = Leases(factory, clock)
        # Unique per instance: two apps in one process are two workers too.
        self._holder = f"{process_name()}/{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._running: ChainCheck | None = None
        self._renewed = 0.0
        # A result this process could not record (a database outage): shown until a newer one.
        self._unrecorded: CheckResult | None = None
        self._thread: threading.Thread | None = None

    def state(self) -> ChainState:
        """The head, the last result, the running check (blocking: reads the database)."""
        with self._lock:
            running, unrecorded = self._running, self._unrecorded
        with self._factory() as db:
            head = db.get(AuditChainHead, 1)
            last = last_result(db)
        if unrecorded is not None and (last is None or unrecorded.finished_at > last.finished_at):
            last = unrecorded
        elsewhere = running is None and self._leases.holder(LEASE) not in (None, self._holder)
        head_seq, base_seq = (0, 0) if head is None else (head.seq, head.base_seq)
        return ChainState(head_seq, base_seq, last, running, elsewhere)

    def start(self, context: RequestContext) -> bool:
        """Start a check unless one is running here or on another worker (False then).
        Audited; blocking."""
        with self._lock:
            if self._running is not None:
                return False
            if not self._leases.acquire(LEASE, self._holder, LEASE_SECONDS):
                return False
            try:
                # Recorded first, so the walk covers the event that says who asked for it.
                self._auditor.record(_started(), context)
                total = self._head()
            except BaseException:
                self._leases.release(LEASE, self._holder)
                raise
            self._renewed = self._clock.monotonic()
            self._running = ChainCheck(self._clock.now(), context.actor, total)
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
            if self._running is not None:
                self._running = replace(self._running, checked=checked)
        if self._clock.monotonic() - self._renewed >= RENEW_SECONDS:
            self._renewed = self._clock.monotonic()
            try:
                self._leases.acquire(LEASE, self._holder, LEASE_SECONDS)
            except Exception:  # the walk goes on; the lease may lapse
                log.warning("could not renew the audit chain check's lease", exc_info=True)

    def _run(self, context: RequestContext) -> None:
        try:
            try:
                verdict = verify_chain(
                    self._factory, self._chain, self._progress, every=PROGRESS_EVERY
                )
            except Exception as exc:  # a database outage: say the check did not finish
                log.exception("the audit chain check failed")
                verdict = Verdict(0, f"the check could not finish ({type(exc).__name__})")
            try:
                # Recorded before the check ends here: a poll sees it running or its result.
                self._auditor.record(_result(verdict), context)
            except Exception:  # the verdict is still shown here; the outage is logged
                log.exception("the audit chain check's result could not be recorded")
                with self._lock:
                    self._unrecorded = CheckResult(self._clock.now(), context.actor, verdict)
        finally:
            # Released before the check ends here: a new start here takes a lease of its own.
            try:
                self._leases.release(LEASE, self._holder)
            except Exception:  # it expires on its own
                log.warning("could not release the audit chain check's lease", exc_info=True)
            with self._lock:
                self._running = None
