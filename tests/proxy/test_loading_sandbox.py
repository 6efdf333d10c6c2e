"""Attacks on the custom loading-page sandbox: templates that reach for Python's internals, the
server's configuration, files or the environment, that change values, or that try to exhaust
time, memory or output. Each one gives the built-in page (audited), never its own output or an
error to the visitor."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.audit.models import AuditEvent
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.proxy import themes
from wakedock.proxy.themes import LoadingPages, LoadingRender, TemplateFailed, render_in_sandbox

pytestmark = pytest.mark.security

VALUES: dict[str, object] = {"display_name": "app", "progress": 5, "status_url": "/s"}
BUILT_IN = "<h1>Starting app&hellip;</h1>"


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(runtime=runtime)


def rendered(h: Harness, template: str, timeout_s: float = 3.0) -> LoadingRender:
    """The page the next visitor of a service with `template` would get."""
    h.components.files.write("app/loading.html", template.encode())
    add_service(h, loading_page={"theme": "custom", "template": "app/loading.html"})
    themes = LoadingPages(h.components.files, h.components.auditor, timeout_s=timeout_s)
    return themes.render(h.components.services.get("app"), RequestContext(ip="203.0.113.9"))


def audited_reasons(h: Harness) -> list[str]:
    with transaction(h.components.db) as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.type == "loading_page_failed"))
        return [row.details for row in rows]


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ display_name.__class__.__init__.__globals__ }}",
        "{{ range.__globals__ }}",
        "{{ range.__self__ }}",
        "{{ self.__dict__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
        "{{ ''|attr('__class__') }}",
        "{{ cycler.__init__.__globals__.os.environ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ config }}",
        "{{ request }}",
        "{{ namespace }}",
        "{% include '/etc/passwd' %}",
        "{% import 'os' as os %}",
        "{% extends '/etc/hostname' %}",
        "{{ [].append(1) }}",
        "{% set d = {} %}{{ d.update({'a': 1}) }}",
        "{{ 'x'.format.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
    ],
)
def test_escapes_from_the_sandbox_are_refused(h: Harness, template: str) -> None:
    page = rendered(h, template)
    assert page.body.startswith(BUILT_IN)
    assert page.failure is not None
    for leaked in ("<class", "subclasses", "environ", "root:", "uid="):
        assert leaked not in page.body
    [reason] = audited_reasons(h)
    assert "app/loading.html" in reason


def test_a_refused_attribute_is_a_medium_severity_event(h: Harness) -> None:
    rendered(h, "{{ ''.__class__ }}")
    with transaction(h.components.db) as db:
        [event] = db.scalars(select(AuditEvent).where(AuditEvent.type == "loading_page_failed"))
        assert event.severity == "medium" and "SecurityError" in event.details


def test_the_sandbox_process_gets_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Values are all a template sees; the process itself starts with an empty environment, so
    # even a way out of Jinja2 would find no secret of WakeDock's there.
    monkeypatch.setenv("WAKEDOCK_AUTH__JWT_SECRET", "not-a-real-secret")
    assert "WAKEDOCK_AUTH__JWT_SECRET" in os.environ
    page = render_in_sandbox("{{ display_name }}", VALUES, timeout_s=5)
    assert page == "app"
    with pytest.raises(TemplateFailed):
        render_in_sandbox("{{ environ }}", VALUES, timeout_s=5)


def test_a_slow_template_is_stopped_and_the_built_in_page_shown(h: Harness) -> None:
    slow = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    page = rendered(h, slow, timeout_s=1.0)
    assert page.body.startswith(BUILT_IN)
    assert page.failure is not None
    assert "longer than 1 s" in page.failure or "sandbox stopped" in page.failure


def test_a_memory_bomb_is_stopped(h: Harness) -> None:
    page = rendered(h, "{{ 'x' * 2000000000 }}")
    assert page.body.startswith(BUILT_IN)
    assert page.failure is not None and "MemoryError" in page.failure


def test_a_huge_output_is_refused(h: Harness) -> None:
    page = rendered(h, "{% for i in range(100000) %}0123456789{% endfor %}")
    assert page.body.startswith(BUILT_IN)
    assert page.failure is not None and "larger than" in page.failure


def test_a_template_too_large_on_disk_is_refused_at_render(h: Harness) -> None:
    # Saved small, replaced through the files API by one larger than a template may be.
    h.components.files.write("app/loading.html", b"<p>ok</p>")
    add_service(h, loading_page={"theme": "custom", "template": "app/loading.html"})
    h.components.files.write("app/loading.html", b"x" * (64 * 1024 + 1))
    page = h.components.loading_pages.render(
        h.components.services.get("app"), RequestContext(ip="203.0.113.9")
    )
    assert page.body.startswith(BUILT_IN) and "larger than" in (page.failure or "")


def test_a_missed_deadline_is_tried_again_not_kept(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy host may miss the deadline of a good template: a later visitor gets it rendered,
    instead of the built-in page for as long as the template stays."""
    h.components.files.write("app/loading.html", b"<h1>{{ display_name }} wakes</h1>")
    add_service(h, loading_page={"theme": "custom", "template": "app/loading.html"})
    monkeypatch.setattr(themes, "_RETRY_AFTER_S", 0.0)
    real = themes.render_in_sandbox
    deadlines = iter([0.001, 30.0])  # the first render misses its deadline, the next has time

    def busy_then_idle(source: str, values: dict[str, object], **kwargs: float) -> str:
        return real(source, values, timeout_s=next(deadlines))

    monkeypatch.setattr(themes, "render_in_sandbox", busy_then_idle)
    pages = LoadingPages(h.components.files, h.components.auditor)
    view = h.components.services.get("app")
    missed = pages.render(view, RequestContext())
    assert missed.failure is not None and "longer than" in missed.failure
    assert missed.body.startswith(BUILT_IN)
    assert pages.render(view, RequestContext()).body == "<h1>app wakes</h1>"


def test_visitors_arriving_together_share_one_sandbox_process(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.components.files.write("app/loading.html", b"<h1>{{ display_name }}</h1>")
    add_service(h, loading_page={"theme": "custom", "template": "app/loading.html"})
    calls: list[str] = []
    real = themes.render_in_sandbox

    def counted(source: str, values: dict[str, object], **kwargs: float) -> str:
        calls.append(source)
        return real(source, values, **kwargs)

    monkeypatch.setattr(themes, "render_in_sandbox", counted)
    view = h.components.services.get("app")
    pages = LoadingPages(h.components.files, h.components.auditor)
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: pages.render(view, RequestContext()).body, range(8)))
    assert bodies == ["<h1>app</h1>"] * 8
    assert len(calls) == 1
