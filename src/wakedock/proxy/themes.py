"""The loading page of a service's theme (`loading_page` in its spec): the built-in one, the dark
one, or its custom template rendered in a sandbox (theme_sandbox.py, in a process of its own).

A custom template renders the page's content; WakeDock writes the rest (the head with the
stylesheet, the polling script), so the strict CSP of pages.py holds whatever the template says:
its inline `<script>` or `style` never runs. A template that cannot be rendered (gone, too
large, a sandbox refusal, too slow, too big an output) gives the visitor the built-in page,
a log line and, once per failure, a `loading_page_failed` audit event; never an error.
Rendered pages are kept by the template's content and values: a template runs once per change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.service import Auditor
from wakedock.context import RequestContext
from wakedock.errors import InvalidInput, NotFound, WakeDockError
from wakedock.proxy import pages
from wakedock.services.loading_page import TemplateFiles, decode_template
from wakedock.services.snapshots import ServiceView

log = logging.getLogger(__name__)

_SANDBOX = Path(__file__).with_name("theme_sandbox.py")
# The first progress value shown (the script moves it on).
START_PROGRESS = 5
# A loading page is small: a custom one larger than this is refused.
MAX_OUTPUT = 256 * 1024
_CACHE_SIZE = 256
# A missed deadline may be the host's load, not the template: tried again after this long.
_RETRY_AFTER_S = 60.0
# At most this many sandbox processes at once per worker (one per template at a time: visitors
# arriving together wait for the first one's page instead of starting their own).
_RENDERERS = 4


@dataclass(frozen=True)
class LoadingRender:
    """A theme's page content and stylesheet; `failure` says why the built-in page replaced a
    custom template (None when the chosen theme was rendered)."""

    body: str
    stylesheet_name: str
    theme: str
    failure: str | None = None


class TemplateFailed(Exception):
    """A custom template could not be rendered (the reason, for the log and the audit).
    `lasting`: the same template will fail again (not so a deadline missed on a busy host)."""

    def __init__(self, reason: str, *, lasting: bool = True) -> None:
        super().__init__(reason)
        self.lasting = lasting


def render_in_sandbox(
    source: str, values: dict[str, object], *, timeout_s: float, max_output: int = MAX_OUTPUT
) -> str:
    """The template's output, rendered by theme_sandbox.py in a process of its own with an
    empty environment (no secret of this one's reaches it); TemplateFailed otherwise."""
    request = json.dumps({"source": source, "values": values, "max_output": max_output})
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and script, input on stdin
            [sys.executable, "-I", str(_SANDBOX)],
            input=request.encode(),
            capture_output=True,
            timeout=timeout_s,
            env={},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TemplateFailed(f"rendering took longer than {timeout_s:g} s", lasting=False) from None
    try:
        answer = json.loads(done.stdout[: max_output * 8 + 1024])
    except ValueError:
        # Killed by its own limits (CPU time, memory) before it could answer.
        raise TemplateFailed(
            f"the sandbox stopped the template (exit status {done.returncode})"
        ) from None
    if "error" in answer:
        raise TemplateFailed(str(answer["error"]))
    return str(answer["html"])


class LoadingPages:
    """The loading page content for a service's theme, for the proxy and the dashboard's
    preview alike."""

    def __init__(self, files: TemplateFiles, auditor: Auditor, *, timeout_s: float = 3.0) -> None:
        self._files = files
        self._auditor = auditor
        self._timeout_s = timeout_s
        # Rendered pages and lasting failures by template and values; a missed deadline with
        # the time to try again.
        self._rendered: dict[str, tuple[str | TemplateFailed, float | None]] = {}
        self._renderers = [threading.Lock() for _ in range(_RENDERERS)]
        # The last failure told of, per service: audited once, not at every visit.
        self._told: dict[str, str] = {}
        self._guard = threading.Lock()

    def render(self, view: ServiceView, context: RequestContext) -> LoadingRender:
        """The page of `view`'s theme. A custom one blocks (a file read, perhaps a sandbox
        process): call it from a worker thread; the built-in themes return at once."""
        name = view.spec.display_name or view.name
        choice = view.spec.loading_page
        if choice.theme != "custom" or choice.template is None:
            return LoadingRender(pages.loading_body(name), choice.theme, choice.theme)
        try:
            body = self._custom(choice.template, name)
        except TemplateFailed as exc:
            self._failed(view, str(exc), context)
            return LoadingRender(pages.loading_body(name), "default", "custom", str(exc))
        with self._guard:
            self._told.pop(view.name, None)
        return LoadingRender(body, "default", "custom")

    def _custom(self, path: str, display_name: str) -> str:
        try:
            content = self._files.read(path)
        except (NotFound, InvalidInput):
            raise TemplateFailed(f"the template {path} is missing or unreadable") from None
        try:
            source = decode_template(content)
        except WakeDockError as exc:
            raise TemplateFailed(exc.detail) from None
        values: dict[str, object] = {
            "display_name": display_name,
            "progress": START_PROGRESS,
            "status_url": pages.STATUS_PATH,
        }
        key = hashlib.sha256(json.dumps([source, values]).encode()).hexdigest()
        kept = self._kept(key)
        if kept is None:
            with self._renderers[int(key[:8], 16) % _RENDERERS]:
                kept = self._kept(key) or self._render(key, source, values)
        if isinstance(kept, TemplateFailed):
            raise kept
        return kept

    def _kept(self, key: str) -> str | TemplateFailed | None:
        with self._guard:
            found = self._rendered.get(key)
        if found is None or (found[1] is not None and time.monotonic() >= found[1]):
            return None
        return found[0]

    def _render(self, key: str, source: str, values: dict[str, object]) -> str | TemplateFailed:
        result: str | TemplateFailed
        try:
            result = render_in_sandbox(source, values, timeout_s=self._timeout_s)
        except TemplateFailed as exc:
            result = exc
        lasting = not isinstance(result, TemplateFailed) or result.lasting
        with self._guard:
            if len(self._rendered) >= _CACHE_SIZE:
                self._rendered.clear()
            self._rendered[key] = (result, None if lasting else time.monotonic() + _RETRY_AFTER_S)
        return result

    def _failed(self, view: ServiceView, reason: str, context: RequestContext) -> None:
        log.warning("loading page of %s: custom template failed: %s", view.name, reason)
        with self._guard:
            if self._told.get(view.name) == reason:
                return
            self._told[view.name] = reason
        # A refused attribute is someone probing the sandbox, or a template bug: worth a look.
        severity = Severity.MEDIUM if "SecurityError" in reason else Severity.LOW
        event = Event(
            EventType.LOADING_PAGE_FAILED,
            Outcome.FAILURE,
            target=view.name,
            severity=severity,
            details={"template": view.spec.loading_page.template, "reason": reason[:300]},
        )
        self._auditor.record(event, context)
