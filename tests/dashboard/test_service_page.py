"""A service's page in process: who sees what (the API's permissions: a viewer reads, no button,
no log; an operator reads the log and the audit events; a developer not the owner neither
operates nor reads the log), a hostile display name and log line escaped, the log tail bounded,
secret references shown by name and never a value, the hardening read from the engine, the
audit events paged, and the charts drawn as SVG without inline style or script."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.pages import events, page_client, password_step
from support.proxy import add_service
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor
from wakedock.services.wake_history import WakeHistory

from .conftest import SignIn

ADMIN = Actor("test", Role.ADMIN)
JSON = {"Accept": "application/json"}
HOSTILE = '<script>alert("x")</script>'
HOSTILE_LINE = '<img src=x onerror=alert(1)> & "quotes"'


def start(h: Harness, name: str) -> None:
    h.components.services.start(ADMIN, name, RequestContext(actor="test"))


def inspected(ref: str) -> list[dict[str, Any]]:
    """What `docker inspect` says of a WakeDock container (the fields the page reads)."""
    return [
        {
            "Name": "/wakedock-app",
            "Config": {"User": "1000:1000", "Healthcheck": {"Test": ["CMD", "true"]}},
            "HostConfig": {
                "CapDrop": ["ALL"],
                "CapAdd": ["NET_BIND_SERVICE"],
                "ReadonlyRootfs": True,
                "SecurityOpt": ["no-new-privileges"],
                "Memory": 256 * 2**20,
                "NanoCpus": 500_000_000,
                "PidsLimit": 256,
                "Init": True,
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5},
                "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            },
            "NetworkSettings": {
                "Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}
            },
        }
    ]


def test_without_a_session_the_page_sends_to_sign_in(h: Harness) -> None:
    browser = page_client(h, 50400)
    page = browser.get("/services/app")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fservices%2Fapp"
    for part in ("live", "logs"):
        answer = browser.get(f"/services/app/{part}")
        assert answer.status_code == 401 and answer.json()["code"] == "not_authenticated"


def test_the_services_list_links_each_name_to_its_page(signed_in: SignIn) -> None:
    browser, _token = signed_in(Role.VIEWER)
    listing = browser.get("/services").text
    assert '<a href="/services/app">Team wiki</a>' in listing
    page = browser.get("/services/app")
    assert page.status_code == 200
    assert re.search(r"<h1>Team wiki <span class=\"muted\">app</span></h1>", page.text)
    assert '<a href="https://app.localhost/">app.localhost</a>' in page.text
    # Its loading page, previewed as a visitor would see it (nothing woken).
    preview = re.search(r'<a href="(/services/app/loading-preview)">Loading page', page.text)
    assert preview is not None and "(default theme)" in page.text
    shown = browser.get(preview.group(1))
    assert shown.status_code == 200 and "Team wiki" in shown.text


def test_a_viewer_reads_the_page_without_buttons_logs_or_audit(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn
) -> None:
    start(h, "app")
    browser, _token = signed_in(Role.VIEWER)
    page = browser.get("/services/app").text
    assert not re.search(r">(Wake|Stop|Restart)<", page)
    assert 'id="log-tail"' not in page and "line 0" not in page
    assert "Only the service&#39;s owner and operators read its logs." in page
    assert "The audit trail is for roles with <code>audit:read</code>." in page
    assert "service_start" not in page
    assert '"image": "wakedock-test/busybox:1"' in page.replace("&#34;", '"')  # the spec
    # The log tail is refused as the API refuses it (and the refusal audited as there).
    refused = browser.get("/services/app/logs", headers=JSON)
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    [denied] = events(h, "forbidden_access")
    assert denied.target == "/services/app/logs"
    assert "services:operate" in (denied.details or "")


def test_an_unknown_service_is_404(signed_in: SignIn) -> None:
    browser, _token = signed_in(Role.OPERATOR)
    page = browser.get("/services/nope")
    assert page.status_code == 404 and "no such service" in page.text
    assert browser.get("/services/nope/logs").status_code == 404
    assert browser.get("/services/nope/live").status_code == 404


@pytest.mark.security  # markup in the path on purpose: the edge's WAF refuses it first
def test_a_hostile_unknown_name_is_not_repeated(signed_in: SignIn) -> None:
    browser, _token = signed_in(Role.OPERATOR)
    page = browser.get("/services/%3Cscript%3Ealert(1)%3C")
    assert page.status_code == 404
    assert "no such service" in page.text and "<script>alert" not in page.text


@pytest.mark.security
def test_a_hostile_display_name_and_log_line_are_escaped(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_service(h, "odd", display_name=HOSTILE)
    start(h, "odd")
    monkeypatch.setattr(runtime, "logs", lambda ref, tail: f"started\n{HOSTILE_LINE}\n")
    browser, _token = signed_in(Role.OPERATOR)
    page = browser.get("/services/odd").text
    assert HOSTILE not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;quotes&#34;" in page
    # The poll hands the lines as JSON strings; the script sets them as text.
    assert browser.get("/services/odd/logs", headers=JSON).json() == {
        "lines": ["started", HOSTILE_LINE]
    }
    listing = browser.get("/services").text
    assert HOSTILE not in listing


@pytest.mark.security
def test_the_log_tail_is_bounded_in_lines_and_length(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(h, "app")
    asked: list[int] = []

    def flood(ref: str, tail: int) -> str:
        asked.append(tail)
        return "\n".join(f"{n:05d} " + "x" * 10_000 + "\x1b[31m\x07" for n in range(5_000))

    monkeypatch.setattr(runtime, "logs", flood)
    browser, _token = signed_in(Role.OPERATOR)
    lines = browser.get("/services/app/logs", headers=JSON).json()["lines"]
    assert asked == [200]
    assert len(lines) == 200 and lines[0].startswith("04800 ") and lines[-1].startswith("04999 ")
    assert {len(line) for line in lines} == {2000}
    page = browser.get("/services/app").text
    [tail] = re.findall(r'<pre id="log-tail"[^>]*>(.*?)</pre>', page, re.S)
    assert len(tail.split("\n")) == 200 and len(page) < 600_000


def test_a_developer_not_the_owner_neither_operates_nor_reads_the_log(
    h: Harness, signed_in: SignIn
) -> None:
    start(h, "app")
    browser, _token = signed_in(Role.DEVELOPER)
    page = browser.get("/services/app").text
    assert not re.search(r">(Wake|Stop|Restart)<", page)
    assert 'id="log-tail"' not in page
    refused = browser.get("/services/app/logs", headers=JSON)
    assert refused.status_code == 403 and refused.json()["code"] == "not_service_owner"


def test_an_operator_reads_hardening_cis_log_and_buttons(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(h, "app")
    monkeypatch.setattr(runtime, "inspect", inspected)
    browser, token = signed_in(Role.OPERATOR)
    page = browser.get("/services/app").text
    assert '<form method="post" action="/services/app/wake"' in page
    assert f'name="csrf_token" value="{token}"' in page
    facts = dict(re.findall(r"<div><dt>([^<]+)</dt><dd>(.*?)</dd></div>", page))
    assert facts["User"] == "1000:1000"
    assert facts["Capabilities dropped"] == "ALL"
    assert facts["Capabilities added"] == "NET_BIND_SERVICE"
    assert facts["Read-only root"] == "yes" and facts["No new privileges"] == "yes"
    assert facts["Memory limit"] == "256 MiB" and facts["CPU limit"] == "0.50 CPU"
    assert facts["Process limit"] == "256"
    assert facts["Published ports"].startswith("127.0.0.1:49153 \u2192 8080/tcp")
    assert "loopback only" in facts["Published ports"]
    assert "0 of 22 checks failed." in page
    assert re.search(
        r"<td>5\.13</td><td>[^<]+</td><td><span class=\"badge\" data-value=\"pass\">PASS", page
    )
    tail = re.findall(r'<pre id="log-tail"[^>]*>(.*?)</pre>', page, re.S)
    assert tail == ["\n".join(f"line {n}" for n in range(200))]


def test_an_operator_pages_through_the_services_audit_events(h: Harness, signed_in: SignIn) -> None:
    for _ in range(13):  # 26 events naming app: start, stop, ...
        start(h, "app")
        h.components.services.stop(ADMIN, "app", RequestContext(actor="test"))
    start(h, "blog")
    browser, _token = signed_in(Role.OPERATOR)
    first = browser.get("/services/app").text
    rows = re.findall(r"<tr><td>[0-9T:.-]+Z</td><td>(service_\w+)</td>", first)
    assert len(rows) == 20 and rows[0] == "service_stop"
    [older] = re.findall(r'href="/services/app\?audit_before=(\d+)#audit-title"', first)
    rest = browser.get("/services/app", params={"audit_before": older}).text
    more = re.findall(r"<tr><td>[0-9T:.-]+Z</td><td>(service_\w+)</td>", rest)
    assert len(more) == 7 and more[-1] == "service_create"  # 27 in all, none of blog's
    assert "audit_before=" not in rest


@pytest.mark.security
def test_secret_references_are_shown_by_name_never_by_value(
    make_harness: Callable[..., Harness], runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = "value-read-only-at-container-start"
    monkeypatch.setenv("WAKEDOCK_SECRET_SERVICES__APP__DB__PASSWORD", value)
    monkeypatch.setenv("WAKEDOCK_SECRET_WAKEDOCK__JWT__KEY", "k" * 48)
    h = make_harness(runtime=runtime, secrets={"provider": "env"})
    env = {"DB_AUTH": "secret:services/app/db#password", "MODE": "prod"}
    add_service(h, "app", env=env)
    start(h, "app")
    (container,) = runtime.containers.values()
    assert container.environment["DB_AUTH"] == value  # resolved at the start
    name, password = h.create_user("olga", Role.OPERATOR)
    browser = page_client(h, 50450)
    password_step(browser, name, password, "/services/app")
    page = browser.get("/services/app").text
    assert (
        "<tr><td><code>DB_AUTH</code></td><td><code>services/app/db</code></td>"
        "<td><code>password</code></td></tr>"
    ) in page
    live = browser.get("/services/app/live").text
    assert value not in page and value not in live


def test_the_charts_show_the_persisted_wakes_requests_and_usage(
    h: Harness, runtime: FakeRuntime, signed_in: SignIn
) -> None:
    app = h.components.services.get("app")
    history = WakeHistory(h.components.db)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for n in range(60):
        history.record(app.id, 1.0 + n / 10, at + timedelta(minutes=n))
    start(h, "app")
    with h.components.activity.connection("app"):
        pass
    browser, _token = signed_in(Role.VIEWER)
    page = browser.get("/services/app").text
    wakes = re.search(r'<figure class="chart" id="chart-wakes">(.*?)</figure>', page, re.S)
    assert wakes is not None
    # Only the last 50 wakes are kept (1.0 s .. 6.9 s: the first ten went).
    assert wakes[1].count('<rect class="bar"') == 50
    assert "2026-12-01 09:10 UTC: 2.00 s" in wakes[1] and "09:09 UTC: 1.90 s" not in wakes[1]
    assert "50 wakes: the last took 6.90 s, the median 4.45 s, the slowest 6.90 s." in wakes[1]
    requests = re.search(r'id="chart-requests">(.*?)</figure>', page, re.S)
    assert requests is not None and requests[1].count('<rect class="bar"') == 60
    assert "1 request in the last 60 minutes; the busiest minute had 1." in requests[1]
    # Usage is sampled by the page's poll, while the service runs.
    assert "No sample yet" in page
    runtime.cpu_percent = 42.0
    live = browser.get("/services/app/live").text
    assert '<polyline class="line"' in live
    assert "1 samples: now 42.0 % of one CPU" in live
    assert "now 50.0 MiB of its 256 MiB limit" in live


def test_no_inline_code_and_the_script_matches_its_integrity(signed_in: SignIn) -> None:
    browser, _token = signed_in(Role.OPERATOR)
    page = browser.get("/services/app")
    assert page.headers["cache-control"] == "no-store"
    assert "<style" not in page.text and "style=" not in page.text
    assert not re.search(r"<[^>]+\son[a-z]+=", page.text)  # no event handler attribute
    [tag] = re.findall(r"<script[^>]*>", page.text)
    assert tag.startswith('<script src="/assets/service-detail.js" integrity="sha256-')
    script = browser.get("/assets/service-detail.js")
    assert script.headers["content-type"].startswith("text/javascript")
    digest = base64.b64encode(hashlib.sha256(script.content).digest()).decode()
    assert f'integrity="sha256-{digest}"' in page.text
