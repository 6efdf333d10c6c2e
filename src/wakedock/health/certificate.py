"""How long the served TLS certificate has left, and the warnings before it runs out.

The server (server/certificates.py) hands this watch the certificate it serves, at start and
after every reload, and calls `check` on its certificate thread every reload interval. Each
warning threshold (30, 14 and 3 days before `notAfter` by default, then the expiry itself) is
logged and audited once per certificate: an audit event flows to the SIEM sinks and the alert
webhooks like any other. The health report and /metrics read `current`, which does no I/O.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Severity
from wakedock.audit.models import AuditEvent
from wakedock.audit.service import Auditor
from wakedock.clock import Clock
from wakedock.context import RequestContext

log = logging.getLogger("wakedock.tls")

SYSTEM = RequestContext(actor="system:tls")
DEFAULT_WARNING_DAYS = (30, 14, 3)
_DAY = 86400.0


class CertificateStatus(StrEnum):
    OK = "ok"
    # Within a warning threshold other than the last one.
    WARNING = "warning"
    # Within the last (smallest) threshold.
    CRITICAL = "critical"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ServedCertificate:
    """What is needed of a certificate: who it names, when it ends, how to tell it apart."""

    subject: str
    serial: int
    fingerprint: str  # SHA-256 of the DER, hex
    not_after: datetime

    @classmethod
    def from_pem(cls, pem: bytes) -> ServedCertificate:
        cert = x509.load_pem_x509_certificate(pem)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cls(
            subject=str(names[0].value) if names else cert.subject.rfc4514_string(),
            serial=cert.serial_number,
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            not_after=cert.not_valid_after_utc,
        )


@dataclass(frozen=True)
class CertificateExpiry:
    """A certificate's standing at one moment."""

    certificate: ServedCertificate
    seconds_left: float
    status: CertificateStatus
    # The threshold (in days) it is within, the smallest one reached; 0 once expired.
    threshold: int | None

    @property
    def days_left(self) -> int:
        """Whole days left (0 on the last day, negative once expired)."""
        return int(self.seconds_left // _DAY)


def expiry(
    certificate: ServedCertificate, now: datetime, warning_days: tuple[int, ...]
) -> CertificateExpiry:
    """Where `certificate` stands at `now` against the warning thresholds (in days)."""
    left = (certificate.not_after - now).total_seconds()
    if left <= 0:
        return CertificateExpiry(certificate, left, CertificateStatus.EXPIRED, 0)
    reached = [days for days in warning_days if left <= days * _DAY]
    if not reached:
        return CertificateExpiry(certificate, left, CertificateStatus.OK, None)
    threshold = min(reached)
    last = threshold == min(warning_days)
    status = CertificateStatus.CRITICAL if last else CertificateStatus.WARNING
    return CertificateExpiry(certificate, left, status, threshold)


class CertificateWatch:
    """The served certificate's expiry, for the health report, /metrics and the audit trail.

    Idle (nothing served: plain HTTP, or TLS ended by a proxy in front) until `observe` is
    called; `current` is then None and the report and metrics leave the certificate out.
    """

    def __init__(
        self,
        clock: Clock,
        auditor: Auditor,
        factory: sessionmaker[Session],
        warning_days: tuple[int, ...] = DEFAULT_WARNING_DAYS,
    ) -> None:
        self._clock = clock
        self._auditor = auditor
        self._factory = factory
        self.warning_days = tuple(sorted(set(warning_days), reverse=True))
        self._served: ServedCertificate | None = None
        self._lock = threading.Lock()
        # (fingerprint, threshold) already in the trail, or logged by this process.
        self._audited: set[tuple[str, int]] = set()
        self._logged: set[tuple[str, int]] = set()
        self._looked_up: set[str] = set()

    def observe(self, pem: bytes) -> None:
        """The certificate now served (its PEM, as loaded)."""
        self._served = ServedCertificate.from_pem(pem)

    def current(self) -> CertificateExpiry | None:
        """The served certificate's standing now (no I/O: cheap on the event loop)."""
        served = self._served
        if served is None:
            return None
        return expiry(served, self._clock.now(), self.warning_days)

    def seconds_left(self) -> float | None:
        """Seconds until the served certificate's notAfter (negative once expired), if any."""
        standing = self.current()
        return None if standing is None else standing.seconds_left

    def check(self) -> CertificateExpiry | None:
        """Log and audit a threshold just reached (blocking: may write one audit event).

        Once per threshold and certificate, even across restarts and replicas sharing the
        trail: the thresholds already audited for this certificate are read back from it.
        """
        standing = self.current()
        if standing is None or standing.threshold is None:
            return standing
        with self._lock:
            key = (standing.certificate.fingerprint, standing.threshold)
            if key not in self._logged:
                self._logged.add(key)
                log.warning(_warning_text(standing))
            self._load_audited(standing.certificate.fingerprint)
            if key not in self._audited:
                self._auditor.record(self._event(standing), SYSTEM)
                self._audited.add(key)
        return standing

    def _load_audited(self, fingerprint: str) -> None:
        if fingerprint in self._looked_up:
            return
        with self._factory() as db:
            rows = db.scalars(
                select(AuditEvent.details).where(
                    AuditEvent.type == EventType.TLS_CERTIFICATE_EXPIRING.value,
                    AuditEvent.target == audit_target(fingerprint),
                )
            )
            for details in rows:
                threshold = json.loads(details or "{}").get("threshold_days")
                if isinstance(threshold, int):
                    self._audited.add((fingerprint, threshold))
        self._looked_up.add(fingerprint)

    def _event(self, standing: CertificateExpiry) -> Event:
        served = standing.certificate
        last = standing.threshold is not None and standing.threshold <= min(self.warning_days)
        return Event(
            EventType.TLS_CERTIFICATE_EXPIRING,
            target=audit_target(served.fingerprint),
            severity=Severity.HIGH if last else Severity.MEDIUM,
            details={
                "status": standing.status.value,
                "threshold_days": standing.threshold,
                "days_left": standing.days_left,
                "not_after": served.not_after.isoformat(),
                "subject": served.subject,
                "serial": f"{served.serial:x}",
            },
        )


def audit_target(fingerprint: str) -> str:
    return f"tls-certificate:sha256:{fingerprint}"


def _warning_text(standing: CertificateExpiry) -> str:
    served = standing.certificate
    if standing.status is CertificateStatus.EXPIRED:
        when = f"expired on {served.not_after.isoformat()}"
    else:
        when = f"expires on {served.not_after.isoformat()} ({standing.days_left} days left)"
    return f"the TLS certificate for {served.subject} {when}: replace or renew it"
