"""The browser fixtures: a fresh headless Chromium per test, its page, and step screenshots.

Each test gets its own Chromium process and profile (`--user-data-dir` in the test's temporary
directory): no cookie or cache crosses from one test to another. A test about two people asks
for `second_browser` too: another Chromium process on a profile of its own. With
WAKEDOCK_TEST_THROUGH_EDGE=1, each test's Chromium reaches its server through an edge of its own
(`edge_slot`, support/browser_edge.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.browser import (
    CHROMIUM,
    BrowserCertificate,
    Screenshots,
    Shot,
    chromium_args,
    make_certificate,
)
from support.browser_edge import EdgeSlot, edge_slot_for_test
from support.components import unavailable
from support.engine import add_app, engine, installation, network, python_image  # noqa: F401


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> BrowserCertificate:
    """One test certificate for every server of the session; Chromium trusts its key."""
    return make_certificate(tmp_path_factory.mktemp("browser-tls"))


@pytest.fixture(autouse=True)
def edge_slot() -> Iterator[EdgeSlot | None]:
    """Through the edge, where the test's edge will listen (Chromium is pointed there before
    its server starts); otherwise None. A module that runs an edge of its own overrides it."""
    with edge_slot_for_test() as slot:
        yield slot


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Playwright's Chromium launcher (Debian's Chromium), for the test's browsers."""
    if not Path(CHROMIUM).exists():
        unavailable("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
        raise AssertionError from None  # unreachable
    with sync_playwright() as playwright:
        yield playwright.chromium


@contextmanager
def chromium_with_profile(
    chromium: Any, profile: Path, certificate: BrowserCertificate
) -> Iterator[Any]:
    """A Chromium process of its own on the profile `profile`: a BrowserContext."""
    context = chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=chromium_args(certificate),
        viewport={"width": 1024, "height": 768},
    )
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def browser(tmp_path: Path, certificate: BrowserCertificate, chromium: Any) -> Iterator[Any]:
    """A Playwright BrowserContext of Debian's Chromium with a fresh profile."""
    with chromium_with_profile(chromium, tmp_path / "chromium-profile", certificate) as context:
        yield context


@pytest.fixture
def second_browser(tmp_path: Path, certificate: BrowserCertificate, chromium: Any) -> Iterator[Any]:
    """Another person's browser: a second Chromium process with a fresh profile of its own (no
    cookie shared with `browser`)."""
    profile = tmp_path / "second-chromium-profile"
    with chromium_with_profile(chromium, profile, certificate) as context:
        yield context


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Any, screenshots: Screenshots) -> Iterator[Any]:
    """The browser's one tab; a failed test leaves a screenshot of where it stopped."""
    tab = browser.pages[0] if browser.pages else browser.new_page()
    yield tab
    if request.node.stash.get(_FAILED, False):
        tab.screenshot(path=str(screenshots.path("failed")), full_page=True)
        (screenshots.directory / "failed-url.txt").write_text(tab.url + "\n")


@pytest.fixture
def shot(page: Any, screenshots: Screenshots) -> Shot:
    """`shot("signed-in")` saves test-output/browser/<test>/NN-signed-in.png."""

    def take(step: str) -> None:
        page.screenshot(path=str(screenshots.path(step)), full_page=True)

    return take


@pytest.fixture
def foreign_site() -> Iterator[Callable[[str], str]]:
    """Another site (http://127.0.0.1:<other port>) serving one page: `publish(html)` -> URL."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def publish(html: str) -> str:
        pages["/"] = html.encode()
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield publish
    httpd.shutdown()
    thread.join(10)
