"""The certificate and key nginx serves, and the CA it trusts for WakeDock: last good copies.

The rendered configuration names copies under the edge's output directory (`tls/`), never the
configured files themselves. A pair is copied there only once it loads (the key matches the
certificate, both parse), so a certificate replaced on disk by a broken one leaves the last
good pair in place: a reload refuses the new one, and an nginx restarted meanwhile (it died,
the machine rebooted) still starts, serving the last good pair, instead of failing on the
broken one (docs/edge.md, "Upkeep").
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger("wakedock.edge")

SERVED_DIR = "tls"


class CertificateRefused(ValueError):
    """The configured certificate and key do not load together (the served pair stays)."""


def served_pair(out_dir: Path) -> tuple[Path, Path]:
    """Where the rendered configuration points nginx: the last good certificate and key."""
    return out_dir / SERVED_DIR / "cert.pem", out_dir / SERVED_DIR / "key.pem"


def check_pair(cert: Path, key: Path) -> None:
    """What nginx checks when it loads them: both parse and the key is the certificate's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateRefused(f"{cert} and {key} do not load together: {exc}") from exc


def install_pair(cert: Path, key: Path, out_dir: Path) -> bool:
    """Copy the configured pair over the served one if it loads; True if the served pair
    changed. CertificateRefused if it does not (the last good pair, if any, is kept)."""
    served_cert, served_key = served_pair(out_dir)
    texts = {served_key: key.read_bytes(), served_cert: cert.read_bytes()}
    if _same(texts):
        return False
    check_pair(cert, key)
    # The key first, each replaced whole: a reload reading them in between sees either the
    # old pair or a new key with the old certificate, which nginx refuses, keeping the old.
    _write(texts)
    return True


def install_ca(ca: Path, out_dir: Path) -> bool:
    """The same for the CA that vouches for WakeDock's listener (with a generated certificate,
    the certificate itself: a broken one must not stop nginx from starting either)."""
    served = served_ca(out_dir)
    texts = {served: ca.read_bytes()}
    if _same(texts):
        return False
    try:
        ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CertificateRefused(f"{ca} does not load as a CA: {exc}") from exc
    _write(texts)
    return True


def served_ca(out_dir: Path) -> Path:
    return out_dir / SERVED_DIR / "wakedock-ca.pem"


def _same(texts: dict[Path, bytes]) -> bool:
    return all(path.exists() and path.read_bytes() == text for path, text in texts.items())


def _write(texts: dict[Path, bytes]) -> None:
    for path, text in texts.items():
        path.parent.mkdir(mode=0o700, exist_ok=True)
        partial = path.with_name(path.name + ".new")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text)
        partial.replace(path)


def has_served_pair(out_dir: Path) -> bool:
    """A last good pair is in place (and still loads)."""
    try:
        check_pair(*served_pair(out_dir))
    except CertificateRefused:
        return False
    return True


def has_served_ca(out_dir: Path) -> bool:
    return served_ca(out_dir).exists()


def install_served(cert: Path, key: Path, ca: Path, out_dir: Path) -> bool:
    """Install the pair and the CA (write_edge); True if either changed. One that does not load
    keeps its last good copy (a warning), or raises CertificateRefused when there is none."""
    changed = False
    try:
        changed |= install_pair(cert, key, out_dir)
    except CertificateRefused as exc:
        _keep_last_good(exc, has_served_pair(out_dir))
    try:
        changed |= install_ca(ca, out_dir)
    except CertificateRefused as exc:
        _keep_last_good(exc, has_served_ca(out_dir))
    return changed


def _keep_last_good(refused: CertificateRefused, have_copy: bool) -> None:
    if not have_copy:
        raise refused
    log.warning("%s: the edge keeps its last good copy", refused)
