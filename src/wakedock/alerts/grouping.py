"""Alert flood grouping: a scan must not page anyone a thousand times.

Alerts of one rule from one address within a window form a group: the first is delivered at
once, the rest are counted, and when the window closes one summary says how many more there
were ("49 more from 203.0.113.9 in the last 5 min"). Nothing is lost: the audit trail (and every
SIEM sink) still has each event; the summary lists their ids. Alerts without an address (an
admin grant, a certificate about to expire) are never grouped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wakedock.alerts.detect import Alert

# Event ids a summary lists (the count is exact beyond it; the trail has them all).
SUMMARY_IDS = 100


@dataclass
class _Group:
    first: Alert
    opened: datetime
    more: int = 0
    event_ids: list[str] = field(default_factory=list)


class AlertGrouper:
    """Groups alerts by (rule, address) within `window`; a zero window turns grouping off."""

    def __init__(self, window: timedelta) -> None:
        self._window = window
        self._groups: dict[tuple[str, str], _Group] = {}

    def admit(self, alert: Alert, at: datetime) -> list[Alert]:
        """What to deliver now for an alert raised by an event of time `at`: the alert itself
        when it opens a group (after the summary of the group whose window it closed), nothing
        when it joins an open group."""
        address = alert.facts.get("ip")
        if not address or self._window <= timedelta(0):
            return [alert]
        key = (alert.rule, address)
        group = self._groups.get(key)
        if group is not None and at < group.opened + self._window:
            group.more += 1
            if len(group.event_ids) < SUMMARY_IDS:
                group.event_ids.extend(alert.event_ids[: SUMMARY_IDS - len(group.event_ids)])
            return []
        delivered = self._close(key) if group is not None else []
        self._groups[key] = _Group(alert, at)
        return [*delivered, alert]

    def due(self, now: datetime) -> list[Alert]:
        """The summaries of the groups whose window has closed by `now`."""
        closed = [key for key, group in self._groups.items() if now >= group.opened + self._window]
        return [summary for key in closed for summary in self._close(key)]

    def _close(self, key: tuple[str, str]) -> list[Alert]:
        group = self._groups.pop(key)
        if group.more == 0:
            return []
        first, address = group.first, key[1]
        minutes = max(1, round(self._window.total_seconds() / 60))
        facts = {
            "rule": first.rule,
            "ip": address,
            "more": str(group.more),
            "window": f"{int(self._window.total_seconds())} s",
            "since": group.opened.isoformat().replace("+00:00", "Z"),
        }
        if "event" in first.facts:
            facts["event"] = first.facts["event"]
        title = f"{first.title}: {group.more} more from {address} in the last {minutes} min"
        return [Alert(first.rule, first.severity, title, facts, tuple(group.event_ids))]
