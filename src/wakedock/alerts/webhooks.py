"""Alerts delivered to webhooks: Slack-compatible JSON or generic JSON, as a pipeline "sink".

`AlertSink` reads the audit stream through the same cursor-and-retry machinery as the SIEM sinks
(siem/exporter.py), so alerts survive restarts and a webhook outage, and arrive within the
poll interval (one second by default). Each alert is audited when raised (`alert_raised`) and
when delivered to every webhook (`alert_delivered`), both with the time of the event that
raised it: the posture page reads back from the trail which alerts wait, and their time to
delivery (the MTTD).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from wakedock.alerts.detect import Alert, DetectionSettings, Detector
from wakedock.alerts.geoip import GeoIP
from wakedock.alerts.grouping import AlertGrouper
from wakedock.alerts.ssrf import IPNetwork, UnsafeWebhook, check_webhook
from wakedock.audit.events import Event, EventType
from wakedock.audit.export import AuditRecord
from wakedock.audit.service import Auditor
from wakedock.clock import Clock, SystemClock
from wakedock.config import AlertSettings
from wakedock.context import RequestContext
from wakedock.siem.exporter import sink_key
from wakedock.siem.sinks import SinkError, http_failure

TIMEOUT = 10.0
SYSTEM = RequestContext(actor="system:alerts")
# Event ids a delivery receipt lists (a summary can stand for a hundred).
RECEIPT_IDS = 10

log = logging.getLogger("wakedock.alerts")


@dataclass(frozen=True)
class Webhook:
    url: str
    slack: bool

    @classmethod
    def parse(cls, url: str) -> Webhook:
        if url.startswith("slack+"):
            return cls(url.removeprefix("slack+"), slack=True)
        return cls(url, slack=False)


def payload(alert: Alert, slack: bool) -> dict[str, object]:
    if slack:
        lines = "\n".join(f"• *{k}*: {v}" for k, v in alert.facts.items())
        return {"text": f":rotating_light: WakeDock — {alert.title}\n{lines}"}
    return {
        "source": "wakedock",
        "rule": alert.rule,
        "severity": alert.severity,
        "title": alert.title,
        "facts": alert.facts,
        "event_ids": list(alert.event_ids),
    }


class AlertSink:
    name = "alerts"

    def __init__(
        self,
        webhooks: list[Webhook],
        detector: Detector,
        allowed: tuple[IPNetwork, ...],
        grouper: AlertGrouper | None = None,
        clock: Clock | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self._webhooks = webhooks
        self._detector = detector
        self._allowed = allowed
        self._grouper = grouper or AlertGrouper(timedelta(0))
        self._clock = clock or SystemClock()
        self._auditor = auditor
        self._client = httpx.Client(timeout=TIMEOUT, trust_env=False, follow_redirects=False)
        # Alerts decided but not yet delivered to every webhook (kept across a failed attempt),
        # each with the time of the event that raised it.
        self._outbox: list[tuple[Alert, datetime]] = []
        # The last event fed to the detector: a batch sent again after a failure is not
        # detected (and counted into groups) twice.
        self._fed = 0

    def send(self, batch: Sequence[AuditRecord]) -> None:
        for record in batch:
            if record.seq <= self._fed:
                continue
            self._fed = record.seq
            at = datetime.fromisoformat(record.occurred_at.replace("Z", "+00:00"))
            for alert in self._detector.feed(record):
                for admitted in self._grouper.admit(alert, at):
                    self._raise(admitted, at)
        self.tick()

    def tick(self) -> None:
        """Deliver the summaries of closed groups, and whatever a failed attempt left (the
        delivery worker calls it when idle, so a summary needs no further event)."""
        now = self._clock.now()
        # A summary is raised when its window closes (its events' own alert went out at once).
        for summary in self._grouper.due(now):
            self._raise(summary, now)
        while self._outbox:
            alert, raised_at = self._outbox[0]
            for hook in self._webhooks:
                self._post(hook, alert)
            self._outbox.pop(0)
            self._audit(EventType.ALERT_DELIVERED, alert, raised_at)

    def _raise(self, alert: Alert, raised_at: datetime) -> None:
        """Queue an alert for delivery, audited at once: a webhook that refuses it must not
        hide that it was raised (the posture page lists it as waiting)."""
        self._outbox.append((alert, raised_at))
        self._audit(EventType.ALERT_RAISED, alert, raised_at)

    def _audit(self, kind: EventType, alert: Alert, raised_at: datetime) -> None:
        """Audit an alert raised or delivered; the same details in both, so that a receipt
        finds its alert. Never raises: a lost record must not raise or send it again."""
        if self._auditor is None:
            return
        details: dict[str, object] = {
            "rule": alert.rule,
            "severity": alert.severity,
            "title": alert.title,
            "raised_at": raised_at.isoformat().replace("+00:00", "Z"),
            "event_ids": list(alert.event_ids[:RECEIPT_IDS]),
            # A flood's summary: its time to delivery is not a detection's (no MTTD).
            "summary": "more" in alert.facts,
        }
        if kind is EventType.ALERT_DELIVERED:
            details["webhooks"] = len(self._webhooks)
        try:
            self._auditor.record(Event(kind, target=alert.rule, details=details), SYSTEM)
        except Exception:
            log.exception("%s of alert %s could not be audited", kind.value, alert.rule)

    def _post(self, hook: Webhook, alert: Alert) -> None:
        try:
            # Checked again at every delivery, and the checked address is the one connected to.
            target = check_webhook(hook.url, self._allowed)
        except UnsafeWebhook as exc:
            raise SinkError(f"alert webhook refused: {exc}") from None
        host = f"[{target.address}]" if ":" in target.address else target.address
        query = f"?{target.query}" if target.query else ""
        url = f"{target.scheme}://{host}:{target.port}{target.path}{query}"
        try:
            reply = self._client.post(
                url,
                content=json.dumps(payload(alert, hook.slack)),
                headers={"Host": target.host, "Content-Type": "application/json"},
                extensions={"sni_hostname": target.host},
            )
        except httpx.HTTPError as exc:
            # Words of our own: an error's text may quote the URL, whose path or query can be
            # the webhook's secret (a Slack URL is one), and this one is shown and logged.
            raise SinkError(f"alert webhook {target.host}: {http_failure(exc, TIMEOUT)}") from None
        if reply.status_code >= 300:
            raise SinkError(f"alert webhook {target.host}: HTTP {reply.status_code}")

    def warm_up(self, history: Sequence[AuditRecord]) -> None:
        """Learn from past events (known countries per user) without alerting on them."""
        for record in history:
            self._detector.feed(record)

    def close(self) -> None:
        self._client.close()


def make_alert_sink(
    config: AlertSettings, clock: Clock | None = None, auditor: Auditor | None = None
) -> AlertSink:
    """The alert pipeline; refuses to start with a webhook that fails the SSRF check."""
    allowed = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in config.allowed_networks)
    hooks = [Webhook.parse(url) for url in config.webhooks]
    for hook in hooks:
        try:
            check_webhook(hook.url, allowed)
        except UnsafeWebhook as exc:
            raise ValueError(f"alerts.webhooks: {exc}") from None
    detection = DetectionSettings(
        brute_force_failures=config.brute_force_failures,
        brute_force_accounts=config.brute_force_accounts,
        brute_force_window=timedelta(seconds=config.brute_force_window_seconds),
        policy_violations=config.policy_violations,
        policy_window=timedelta(seconds=config.policy_window_seconds),
    )
    country_of = GeoIP(config.geoip_database) if config.geoip_database else None
    grouper = AlertGrouper(timedelta(seconds=config.group_window_seconds))
    return AlertSink(hooks, Detector(detection, country_of), allowed, grouper, clock, auditor)


def alerts_cursor_key(written: list[str]) -> str:
    """The delivery cursor of the alert pipeline, from the webhook URLs as configured."""
    return "alerts:" + sink_key("\n".join(written))[:56]
