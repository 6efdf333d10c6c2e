"""The served certificate's upkeep, round by round (no thread: each test calls `tick`): a
generated self-signed certificate is renewed before it expires, for the same names, and served
at once; a configured one is never touched, only warned about."""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from conftest import Harness
from wakedock.audit.models import AuditEvent
from wakedock.clock import FakeClock
from wakedock.config import ConfigError, load_settings
from wakedock.server.certificates import MaintainedCertificate, renew_if_due
from wakedock.server.tls import generate_self_signed, server_context

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def pair(tmp_path: Path, *, not_after: datetime, name: str = "wakedock.test") -> tuple[Path, Path]:
    """A real self-signed pair ending at `not_after`, as `wakedock serve` generates them."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    begins = not_after - timedelta(days=365)
    generate_self_signed(cert, key, name, ("*.apps.test",), now=begins, valid_for=365 * DAY)
    return cert, key


def loaded(cert: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.read_bytes())


def dns_names(cert: x509.Certificate) -> list[str]:
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(alt.get_values_for_type(x509.DNSName))


def audited(h: Harness, type_: str) -> list[dict[str, Any]]:
    with h.components.db() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.type == type_))
        return [json.loads(row.details) for row in rows]


def test_a_generated_certificate_due_is_renewed_for_the_same_names(tmp_path: Path) -> None:
    cert, key = pair(tmp_path, not_after=START + 20 * DAY)
    old = loaded(cert)

    assert renew_if_due(cert, key, START, renew_days=30)
    new = loaded(cert)
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject
    assert dns_names(new) == dns_names(old) == ["*.apps.test", "localhost", "wakedock.test"]
    assert new.not_valid_after_utc >= START + 364 * DAY
    assert new.not_valid_before_utc <= START
    server_context(cert, key)  # the key written matches the certificate
    # Nothing left beside the live files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.pem", "key.pem"]


def test_a_generated_certificate_not_due_is_left_alone(tmp_path: Path) -> None:
    cert, key = pair(tmp_path, not_after=START + 31 * DAY)
    before = (cert.read_bytes(), key.read_bytes())
    assert not renew_if_due(cert, key, START, renew_days=30)
    assert (cert.read_bytes(), key.read_bytes()) == before


def _maintained(
    h: Harness,
    cert: Path,
    key: Path,
    renew_days: int | None,
    leading: Callable[[], bool] | None = None,
) -> MaintainedCertificate:
    c = h.components
    return MaintainedCertificate(
        cert,
        key,
        3600,
        watch=c.certificate,
        auditor=c.auditor,
        clock=c.clock,
        renew_days=renew_days,
        leading=leading,
    )


def _served_serial(maintained: MaintainedCertificate) -> int:
    return x509.load_pem_x509_certificate(maintained.served).serial_number


def _handshake_serial(maintained: MaintainedCertificate) -> int:
    """The serial a client is shown: a real handshake, in memory, on the listening context."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname="wakedock.test")
    tls_server = maintained.listening.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (tls_client, tls_server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = tls_client.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_renewal_over_time_is_served_and_audited(make_harness: Any, tmp_path: Path) -> None:
    clock = FakeClock(START)
    h: Harness = make_harness(clock=clock)
    cert, key = pair(tmp_path, not_after=START + 60 * DAY)
    first = loaded(cert).serial_number
    maintained = _maintained(h, cert, key, renew_days=30)
    assert _handshake_serial(maintained) == first

    maintained.tick()
    assert loaded(cert).serial_number == first  # 60 days left: not due

    clock.advance((31 * DAY).total_seconds())  # 29 days left
    maintained.tick()
    renewed = loaded(cert).serial_number
    assert renewed != first
    # The same round reloads it: new connections are shown the new certificate.
    assert _served_serial(maintained) == renewed
    assert _handshake_serial(maintained) == renewed
    [event] = audited(h, "tls_certificate_renewed")
    assert event["subject"] == "wakedock.test"
    assert event["serial"] == f"{renewed:x}"
    # Renewed before it was checked: no warning about a certificate that is no longer served.
    assert audited(h, "tls_certificate_expiring") == []
    standing = h.components.certificate.current()
    assert standing is not None and standing.status == "ok"

    maintained.tick()
    assert loaded(cert).serial_number == renewed
    assert len(audited(h, "tls_certificate_renewed")) == 1


def test_a_generated_certificate_due_at_start_is_renewed_before_it_is_served(
    make_harness: Any, tmp_path: Path
) -> None:
    h: Harness = make_harness(clock=FakeClock(START))
    cert, key = pair(tmp_path, not_after=START + 2 * DAY)
    old = loaded(cert).serial_number
    maintained = _maintained(h, cert, key, renew_days=30)
    assert _handshake_serial(maintained) == loaded(cert).serial_number != old
    assert len(audited(h, "tls_certificate_renewed")) == 1


def test_only_the_leader_of_several_workers_renews_and_warns(
    make_harness: Any, tmp_path: Path
) -> None:
    h: Harness = make_harness(clock=FakeClock(START))
    cert, key = pair(tmp_path, not_after=START + 2 * DAY)
    old = loaded(cert).serial_number
    leads = False
    maintained = _maintained(h, cert, key, renew_days=30, leading=lambda: leads)
    maintained.tick()
    # Not the leader: it serves and reports the certificate, but neither renews nor audits.
    assert loaded(cert).serial_number == old == _served_serial(maintained)
    standing = h.components.certificate.current()
    assert standing is not None and standing.status != "ok"
    assert audited(h, "tls_certificate_expiring") == []
    assert audited(h, "tls_certificate_renewed") == []
    leads = True
    maintained.tick()
    assert loaded(cert).serial_number != old
    assert _served_serial(maintained) == loaded(cert).serial_number
    assert len(audited(h, "tls_certificate_renewed")) == 1


def test_a_configured_certificate_is_never_renewed_only_warned_about(
    make_harness: Any, tmp_path: Path
) -> None:
    clock = FakeClock(START)
    h: Harness = make_harness(clock=clock)
    cert, key = pair(tmp_path, not_after=START + 10 * DAY)
    before = (cert.read_bytes(), key.read_bytes())
    maintained = _maintained(h, cert, key, renew_days=None)
    maintained.tick()
    clock.advance((8 * DAY).total_seconds())
    maintained.tick()
    clock.advance((3 * DAY).total_seconds())
    maintained.tick()
    assert (cert.read_bytes(), key.read_bytes()) == before
    assert audited(h, "tls_certificate_renewed") == []
    warned = audited(h, "tls_certificate_expiring")
    assert [(e["threshold_days"], e["status"]) for e in warned] == [
        (14, "warning"),
        (3, "critical"),
        (0, "expired"),
    ]


def test_a_failed_renewal_keeps_serving_and_still_warns(make_harness: Any, tmp_path: Path) -> None:
    """The renewed key cannot be written (its temporary path is taken by a directory; the tests
    run as root, so permissions would not stop it): the old certificate is still served, the
    server still starts, and the expiry is still warned about."""
    h: Harness = make_harness(clock=FakeClock(START))
    cert, key = pair(tmp_path, not_after=START + 2 * DAY)
    old = loaded(cert).serial_number
    (tmp_path / ".key.pem.renewing").mkdir()
    maintained = _maintained(h, cert, key, renew_days=30)
    maintained.tick()
    assert loaded(cert).serial_number == old
    assert _handshake_serial(maintained) == old
    assert [e["status"] for e in audited(h, "tls_certificate_expiring")] == ["critical"]


def test_a_certificate_someone_else_put_in_the_data_directory_is_not_renewed(
    make_harness: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not generated by WakeDock (another issuer, another organization), though found where the
    generated one lives: renewing it would silently swap a real certificate for a self-signed
    one."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wakedock.example.com")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START - 80 * DAY)
        .not_valid_after(START + 10 * DAY)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    before = cert_path.read_bytes()
    assert not renew_if_due(cert_path, key_path, START, renew_days=30)
    assert cert_path.read_bytes() == before

    # Served as the "generated" one: said once in the log, not at every round, and only warned
    # about.
    h: Harness = make_harness(clock=FakeClock(START))
    caplog.set_level(logging.WARNING, logger="wakedock.tls")
    maintained = _maintained(h, cert_path, key_path, renew_days=30)
    maintained.tick()
    maintained.tick()
    assert cert_path.read_bytes() == before
    said = [
        r.getMessage() for r in caplog.records if "not a certificate WakeDock" in r.getMessage()
    ]
    assert len(said) == 1
    assert audited(h, "tls_certificate_renewed") == []
    assert [e["threshold_days"] for e in audited(h, "tls_certificate_expiring")] == [14]


@pytest.mark.parametrize("days", [[], [30, 30], [0], [400]])
def test_warning_thresholds_are_checked_at_start(days: list[int]) -> None:
    with pytest.raises(ConfigError, match="tls_expiry_warning_days"):
        load_settings(None, {"server": {"tls_expiry_warning_days": days}})


def test_warning_thresholds_are_ordered() -> None:
    settings = load_settings(None, {"server": {"tls_expiry_warning_days": [3, 60, 14]}})
    assert settings.server.tls_expiry_warning_days == [60, 14, 3]
