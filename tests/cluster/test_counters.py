"""The request counter of /metrics in one process (plain integers); with several workers it
is summed over them (tests/server/test_workers_shared.py)."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from support.fake_runtime import FakeRuntime
from wakedock.app import create_asgi
from wakedock.rbac.permissions import Role


def requests(text: str, target: str) -> float:
    series = f'wakedock_http_requests_total{{target="{target}"}}'
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} missing from:\n{text}"
    return float(match.group(1))


def test_metrics_count_the_requests_by_host_kind(make_harness: Any) -> None:
    h = make_harness(runtime=FakeRuntime())
    operator = h.bearer(h.token_for(Role.OPERATOR))
    client = TestClient(create_asgi(h.components), base_url="https://localhost")
    for _ in range(3):
        assert client.get("/", headers={"Host": "nothing.example"}).status_code == 404
    scraped = client.get("/metrics", headers=operator)
    assert scraped.status_code == 200, scraped.text
    assert requests(scraped.text, "unknown") == 3
    assert requests(scraped.text, "admin") == 1  # the scrape itself
    assert requests(scraped.text, "service") == 0
