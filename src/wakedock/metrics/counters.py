"""Prometheus metrics (S8.5), derived from the audit trail and the live state.

Counters come from the audit table itself, read incrementally (only events after the last seq
seen): every replica reports the same cluster-wide totals, and nothing counted can disagree with
the trail.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.models import AuditEvent
from wakedock.services.models import Service
from wakedock.siem.exporter import SinkStatus

# Events whose details say why (wake, manual, idle, error...).
_WITH_REASON = ("service_start", "service_stop")
_ZERO_TRUST = "zero_trust_decision"


class AuditCounters:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._last_seq = 0
        self.by_type: Counter[str] = Counter()
        self.by_reason: Counter[tuple[str, str, str]] = Counter()
        # Zero-trust decisions (the audited ones: every step-up and deny, every scored allow)
        # by (purpose, decision), and by (signal, decision) for each signal that counted.
        self.zero_trust: Counter[tuple[str, str]] = Counter()
        self.zero_trust_signals: Counter[tuple[str, str]] = Counter()

    def refresh(self) -> None:
        """Count the events recorded since the last refresh (blocking)."""
        with self._lock, self._factory() as db:
            top = db.scalar(select(func.max(AuditEvent.seq))) or 0
            if top <= self._last_seq:
                return
            window = (AuditEvent.seq > self._last_seq, AuditEvent.seq <= top)
            grouped = db.execute(
                select(AuditEvent.type, func.count()).where(*window).group_by(AuditEvent.type)
            )
            for type_, count in grouped:
                self.by_type[type_] += count
            detailed = db.execute(
                select(AuditEvent.type, AuditEvent.outcome, AuditEvent.details).where(
                    *window, AuditEvent.type.in_((*_WITH_REASON, _ZERO_TRUST))
                )
            )
            for type_, outcome, details in detailed:
                parsed = json.loads(details or "{}")
                if type_ == _ZERO_TRUST:
                    self._count_zero_trust(parsed)
                    continue
                reason = str(parsed.get("reason") or parsed.get("trigger") or "manual")
                self.by_reason[(type_, reason, outcome)] += 1
            self._last_seq = top

    def _count_zero_trust(self, details: dict[str, object]) -> None:
        decision = str(details.get("decision", "unknown"))
        self.zero_trust[(str(details.get("purpose", "unknown")), decision)] += 1
        signals = details.get("signals")
        for signal in signals if isinstance(signals, dict) else {}:
            self.zero_trust_signals[(str(signal), decision)] += 1


def running_services(factory: sessionmaker[Session]) -> int:
    with factory() as db:
        return db.scalar(select(func.count()).where(Service.state == "running")) or 0


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _counter(
    name: str,
    help_text: str,
    label_names: tuple[str, ...],
    counts: Iterable[tuple[tuple[str, ...], int]],
) -> list[str]:
    """A labelled counter in the text format: its HELP and TYPE lines, then one line per
    label set (sorted)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    for values, count in sorted(counts):
        labels = ",".join(f'{k}="{_label(v)}"' for k, v in zip(label_names, values, strict=True))
        lines.append(f"{name}{{{labels}}} {count}")
    return lines


def exposition(
    counters: AuditCounters,
    awake_here: int,
    running: int,
    sinks: Iterable[SinkStatus],
    certificate_seconds: float | None = None,
) -> str:
    """The Prometheus text format (version 0.0.4). The certificate gauge only when this process
    serves TLS itself."""
    t = counters.by_type
    lines = [
        "# HELP wakedock_logins_total Password logins by outcome.",
        "# TYPE wakedock_logins_total counter",
        f'wakedock_logins_total{{outcome="success"}} {t["login_success"]}',
        f'wakedock_logins_total{{outcome="failure"}} {t["login_failure"]}',
        "# HELP wakedock_rate_limit_hits_total Requests refused by a rate limit.",
        "# TYPE wakedock_rate_limit_hits_total counter",
        f"wakedock_rate_limit_hits_total {t['rate_limit_hit']}",
        "# HELP wakedock_mfa_failures_total Wrong MFA codes.",
        "# TYPE wakedock_mfa_failures_total counter",
        f"wakedock_mfa_failures_total {t['mfa_failure']}",
        "# HELP wakedock_waf_blocks_total Requests or answers refused by the edge's WAF.",
        "# TYPE wakedock_waf_blocks_total counter",
        f"wakedock_waf_blocks_total {t['waf_blocked']}",
        "# HELP wakedock_csp_violations_total CSP violations browsers reported on admin pages.",
        "# TYPE wakedock_csp_violations_total counter",
        f"wakedock_csp_violations_total {t['csp_violation']}",
        "# HELP wakedock_service_starts_total Service starts by trigger and outcome.",
        "# TYPE wakedock_service_starts_total counter",
    ]
    for (type_, reason, outcome), count in sorted(counters.by_reason.items()):
        if type_ == "service_start":
            labels = f'trigger="{_label(reason)}",outcome="{outcome}"'
            lines.append(f"wakedock_service_starts_total{{{labels}}} {count}")
    lines += [
        "# HELP wakedock_service_stops_total Service stops by reason.",
        "# TYPE wakedock_service_stops_total counter",
    ]
    for (type_, reason, _outcome), count in sorted(counters.by_reason.items()):
        if type_ == "service_stop":
            lines.append(f'wakedock_service_stops_total{{reason="{_label(reason)}"}} {count}')
    lines += _counter(
        "wakedock_zero_trust_decisions_total",
        "Zero-trust decisions by purpose and outcome (every step-up and deny; allows only "
        "when a signal scored).",
        ("purpose", "decision"),
        counters.zero_trust.items(),
    )
    lines += _counter(
        "wakedock_zero_trust_signals_total",
        "Zero-trust decisions each signal scored in, by outcome.",
        ("signal", "decision"),
        counters.zero_trust_signals.items(),
    )
    lines += [
        "# HELP wakedock_services_running Services whose container runs (database view).",
        "# TYPE wakedock_services_running gauge",
        f"wakedock_services_running {running}",
        "# HELP wakedock_services_awake Services this process has woken and is proxying.",
        "# TYPE wakedock_services_awake gauge",
        f"wakedock_services_awake {awake_here}",
        "# HELP wakedock_audit_events_total Audit events by type.",
        "# TYPE wakedock_audit_events_total counter",
    ]
    lines += [
        f'wakedock_audit_events_total{{type="{_label(k)}"}} {v}' for k, v in sorted(t.items())
    ]
    lines += [
        "# HELP wakedock_siem_backlog_events Events not yet delivered, per sink.",
        "# TYPE wakedock_siem_backlog_events gauge",
    ]
    for sink in sinks:
        lines.append(f'wakedock_siem_backlog_events{{sink="{_label(sink.name)}"}} {sink.backlog}')
    if certificate_seconds is not None:
        lines += [
            "# HELP wakedock_tls_certificate_expiry_seconds Seconds until the served TLS "
            "certificate's notAfter (negative once expired).",
            "# TYPE wakedock_tls_certificate_expiry_seconds gauge",
            f"wakedock_tls_certificate_expiry_seconds {int(certificate_seconds)}",
        ]
    return "\n".join(lines) + "\n"
