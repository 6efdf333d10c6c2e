"""The served certificate's upkeep: reload when replaced, renew when generated, warn before expiry.

One thread (the reloader's) does all three every `server.tls_reload_interval`, in this order:
renew a generated self-signed certificate that is due, reload the files if they changed, then
check the served certificate against the warning thresholds (health/certificate.py). Nothing
of it runs on the event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import Auditor
from wakedock.clock import Clock
from wakedock.components import Components
from wakedock.health.certificate import (
    SYSTEM,
    CertificateWatch,
    ServedCertificate,
    audit_target,
)
from wakedock.server.tls import (
    SELF_SIGNED_ORGANIZATION,
    CertificateReloader,
    generate_self_signed,
)

log = logging.getLogger("wakedock.tls")

# Always in a generated certificate (server/tls.py): not worth carrying over as extra names.
_ALWAYS = {"localhost"}


def renew_if_due(cert_path: Path, key_path: Path, now: datetime, renew_days: int) -> bool:
    """Replace a generated self-signed pair with fewer than `renew_days` days left by a fresh one
    for the same names; True if it was renewed.

    Both files are written beside the live ones and renamed over them, the key first: a reader
    sees either pair whole or, between the two renames, a mismatched one that the reloader
    refuses (it keeps serving the old pair and loads the new one on its next round).
    """
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if not made_by_wakedock(cert):
        return False
    if cert.not_valid_after_utc - now > timedelta(days=renew_days):
        return False
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    hostname = str(common[0].value) if common else "localhost"
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = alt.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    extra = tuple(sorted(set(dns) - _ALWAYS - {hostname}))
    fresh_cert = cert_path.with_name(f".{cert_path.name}.renewing")
    fresh_key = key_path.with_name(f".{key_path.name}.renewing")
    generate_self_signed(fresh_cert, fresh_key, hostname, extra, now=now)
    os.replace(fresh_key, key_path)
    os.replace(fresh_cert, cert_path)
    return True


def made_by_wakedock(cert: x509.Certificate) -> bool:
    """Self-signed by generate_self_signed: a pair someone else put in the data directory is
    theirs to renew, never replaced by a self-signed one."""
    organization = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return cert.issuer == cert.subject and [str(o.value) for o in organization] == [
        SELF_SIGNED_ORGANIZATION
    ]


class MaintainedCertificate(CertificateReloader):
    """The reloader, plus renewal of a generated certificate and the expiry warnings."""

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        interval: float,
        *,
        watch: CertificateWatch,
        auditor: Auditor,
        clock: Clock,
        renew_days: int | None,
        leading: Callable[[], bool] | None = None,
    ) -> None:
        """`renew_days`: None for a configured certificate (never touched), else how few days
        left make a generated one due for renewal. `leading` (several worker processes): only
        while it holds does this process renew and warn; every worker reloads."""
        self._leading = leading or (lambda: True)
        self._watch = watch
        self._auditor = auditor
        self._clock = clock
        self._renew_days = renew_days
        self._paths = (cert_path, key_path)
        self._foreign: bytes | None = None  # a certificate not ours, already reported
        # Renewed before the first load: a server started on an old certificate serves a
        # fresh one at once.
        _attempt("renewal", self._renew)
        super().__init__(cert_path, key_path, interval)
        _attempt("expiry check", self._check_expiry)

    def tick(self) -> None:
        _attempt("renewal", self._renew)
        self.check()
        _attempt("expiry check", self._check_expiry)

    def _check_expiry(self) -> None:
        self._watch.observe(self.served)
        if self._leading():
            self._watch.check()

    def _renew(self) -> None:
        if self._renew_days is None or not self._leading():
            return
        cert_path, key_path = self._paths
        pem = cert_path.read_bytes()
        if not made_by_wakedock(x509.load_pem_x509_certificate(pem)):
            if pem != self._foreign:
                self._foreign = pem
                log.warning(
                    "%s is not a certificate WakeDock generated: it is not renewed (configure it "
                    "as server.tls_cert_file, and renew it with its issuer)",
                    cert_path,
                )
            return
        old = ServedCertificate.from_pem(pem)
        if not renew_if_due(cert_path, key_path, self._clock.now(), self._renew_days):
            return
        new = ServedCertificate.from_pem(cert_path.read_bytes())
        log.warning(
            "the generated TLS certificate for %s (expiring %s) was renewed until %s",
            new.subject,
            old.not_after.isoformat(),
            new.not_after.isoformat(),
        )
        self._auditor.record(
            Event(
                EventType.TLS_CERTIFICATE_RENEWED,
                target=audit_target(new.fingerprint),
                details={
                    "subject": new.subject,
                    "previous_sha256": old.fingerprint,
                    "previous_not_after": old.not_after.isoformat(),
                    "not_after": new.not_after.isoformat(),
                    "serial": f"{new.serial:x}",
                },
            ),
            SYSTEM,
        )


def _attempt(what: str, step: Callable[[], object]) -> None:
    """Run one upkeep step; a failure (a read-only directory, the database away while
    auditing) is logged and retried next round, and never stops the server or the reloads."""
    try:
        step()
    except Exception:  # any failure is retried on the next round
        log.exception("TLS certificate %s failed; retrying in the next round", what)


def maintained_certificate(
    components: Components,
    cert_path: Path,
    key_path: Path,
    *,
    generated: bool,
    leading: Callable[[], bool] | None = None,
) -> MaintainedCertificate:
    """The served certificate for `wakedock serve`, wired to the settings and the watch that
    the health report and /metrics read."""
    server = components.settings.server
    return MaintainedCertificate(
        cert_path,
        key_path,
        server.tls_reload_interval,
        watch=components.certificate,
        auditor=components.auditor,
        clock=components.clock,
        renew_days=server.tls_renew_days if generated else None,
        leading=leading,
    )
