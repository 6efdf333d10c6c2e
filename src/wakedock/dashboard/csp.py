"""CSP violation reports: what a browser refused to load or run on an admin page.

The Content-Security-Policy names `report-uri /csp-report` (web/headers.py). A report is anyone's
to send (no session, no CSRF: browsers send them without either), so it is bounded three ways:
the body limit (`MAX_CSP_REPORT_BYTES`, refused while reading), a per-address budget on the
shared rate limiter (`csp:ip`), and only a few short, query-less fields are kept. Each report
kept is one `csp_violation` audit event (low severity), which `/metrics` counts
(`wakedock_csp_violations_total`).

Only `report-uri` is named, not `report-to`: Chromium sends `report-to` reports in batches up to a
minute late and then ignores `report-uri`; a violation should be counted while someone looks.
Both body formats are read (`application/csp-report`, and `application/reports+json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor
from wakedock.context import RequestContext
from wakedock.errors import InvalidInput
from wakedock.ratelimit.limiter import AttemptLimiter

CSP_REPORT_PATH = "/csp-report"
# A real report is a few hundred bytes (Chromium caps its sample at 40 characters).
MAX_CSP_REPORT_BYTES = 8 * 1024
CSP_BY_IP = "csp:ip"
# A page with a real problem reports each blocked resource once per load: a person reloading a
# broken page stays well under this, a flood does not.
CSP_REPORTS_PER_IP = "30/minute"
# The most reports one `application/reports+json` batch may add.
_MAX_PER_BATCH = 10
_FIELD_CHARS = 200


def csp_budgets() -> dict[str, str]:
    """The rate-limit budget of CSP reports per client address."""
    return {CSP_BY_IP: CSP_REPORTS_PER_IP}


@dataclass(frozen=True)
class Violation:
    """One refused resource: which directive, what was blocked, on which page (paths only)."""

    directive: str
    blocked: str
    document: str
    disposition: str


def _short(value: object) -> str:
    return str(value or "")[:_FIELD_CHARS]


def _without_query(url: object) -> str:
    """A URL without its query and fragment (they may carry tokens); keywords such as `inline`
    or `eval` stay as they are."""
    text = _short(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "invalid"
    if not parts.scheme or not parts.netloc:
        return text.split("?", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _document_path(url: object) -> str:
    try:
        return urlsplit(_short(url)).path or "/"
    except ValueError:
        return "invalid"


def parse_reports(body: bytes) -> list[Violation]:
    """The violations of a report body (either format); InvalidInput when it holds none."""
    try:
        parsed: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("a CSP report must be JSON") from None
    found: list[Violation] = []
    if isinstance(parsed, dict) and isinstance(parsed.get("csp-report"), dict):
        report = parsed["csp-report"]
        found.append(
            Violation(
                directive=_short(
                    report.get("effective-directive") or report.get("violated-directive")
                ),
                blocked=_without_query(report.get("blocked-uri")),
                document=_document_path(report.get("document-uri")),
                disposition=_short(report.get("disposition") or "enforce"),
            )
        )
    elif isinstance(parsed, list):
        for item in parsed[:_MAX_PER_BATCH]:
            if not isinstance(item, dict) or item.get("type") != "csp-violation":
                continue
            report = item.get("body")
            if not isinstance(report, dict):
                continue
            found.append(
                Violation(
                    directive=_short(report.get("effectiveDirective")),
                    blocked=_without_query(report.get("blockedURL")),
                    document=_document_path(report.get("documentURL")),
                    disposition=_short(report.get("disposition") or "enforce"),
                )
            )
    if not found or not all(v.directive for v in found):
        raise InvalidInput("no CSP violation in this report")
    return found


class CspReports:
    """Keeps the reports of an address within its budget, each as a `csp_violation` event."""

    def __init__(self, limiter: AttemptLimiter, auditor: Auditor) -> None:
        self._limiter = limiter
        self._auditor = auditor

    def record(self, violations: list[Violation], context: RequestContext) -> None:
        """Audit `violations` (blocking: the limiter and the trail); TooManyAttempts (429) once
        the address spent its budget, and then nothing is recorded."""
        address = context.ip or "?"
        self._limiter.check(CSP_BY_IP, address)
        self._limiter.record_failure(CSP_BY_IP, address)
        for violation in violations:
            event = Event(
                EventType.CSP_VIOLATION,
                Outcome.DENIED,
                target=violation.document,
                details={
                    "directive": violation.directive,
                    "blocked": violation.blocked,
                    "disposition": violation.disposition,
                },
            )
            self._auditor.record(event, context)
