"""Configuration changes between starts are audited, naming the sections that changed."""

from __future__ import annotations

import json

from conftest import Harness
from wakedock.audit.configuration import record_configuration
from wakedock.audit.events import EventType
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role

CONTEXT = RequestContext(actor="system:startup")


def test_first_start_and_each_change_are_recorded(harness: Harness) -> None:
    c = harness.components
    every_section = sorted(json.loads(c.settings.model_dump_json()))
    assert record_configuration(c.db, c.clock, c.settings, CONTEXT) == every_section
    assert record_configuration(c.db, c.clock, c.settings, CONTEXT) == []  # unchanged
    proxy = c.settings.proxy.model_copy(update={"max_awake": 3})
    changed = c.settings.model_copy(update={"proxy": proxy})
    assert record_configuration(c.db, c.clock, changed, CONTEXT) == ["proxy"]
    reader = harness.bearer(harness.token_for(Role.OPERATOR))
    events = harness.client.get(
        "/api/v1/audit", params={"type": EventType.CONFIGURATION_CHANGE.value}, headers=reader
    ).json()["events"]
    assert [e["details"]["changed"] for e in events] == [["proxy"], every_section]
    assert events[0]["severity"] == "high" and events[0]["actor"] == "system:startup"
