"""The console's audit trail in Chromium, as a security admin uses it: sign in with a TOTP
code, filter the trail to the events just made, export them (the file holds exactly those),
verify the chain and see it pass, then, after a row is tampered with in the database, verify
again and see the check name that event. axe-core finds no serious violation at 1440 and 390 px,
and browsers report zero CSP violations.

The real `wakedock serve` over HTTPS (its SQLite database, tampered with directly), Debian's
Chromium.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.axe import WIDE, check_accessibility
from support.browser import (
    BrowserCertificate,
    Shot,
    admin_url,
    browser_server,
    create_user,
    enrol_by_api,
    next_code,
    sign_in_with_code,
    text,
)
from support.login import access_token, bearer
from support.server import WakeDockProcess

from .test_dashboard import csp_violations

pytestmark = pytest.mark.integration


def refused_reads(server: WakeDockProcess, name: str, password: str, times: int) -> str:
    """A viewer asks the audit API `times` times: each refusal is a `forbidden_access` event
    with the viewer as its actor. Returns the viewer's token (for /metrics it has none)."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
        token = access_token(http, name, password)
        for _ in range(times):
            assert http.get("/api/v1/audit", headers=bearer(token)).status_code == 403
    return token


def exported_file(server: WakeDockProcess, href: str, cookies: str) -> httpx.Response:
    """What the browser downloads from an export link (its session cookie, its address)."""
    with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
        answer = http.get(href, headers={"Cookie": cookies})
    assert answer.status_code == 200, answer.text
    return answer


def test_an_admin_filters_exports_and_verifies_the_audit_trail(
    tmp_path: Path, certificate: BrowserCertificate, browser: Any, page: Any, shot: Shot
) -> None:
    data = tmp_path / "data"
    admin = create_user(data, "ada", "admin")
    viewer = create_user(data, "vic", "viewer")
    watcher = create_user(data, "mona", "operator")  # reads /metrics; never signs in a browser
    with browser_server(data, certificate) as server:
        with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
            metrics = access_token(http, "mona", watcher)
        secret, _codes = enrol_by_api(server, "ada", admin)
        page.set_viewport_size(WIDE)
        page.goto(admin_url(server, "/admin/audit"))
        page.get_by_role("heading", name="Sign in").wait_for()
        sign_in_with_code(page, "ada", admin, next_code(secret))
        page.wait_for_url(admin_url(server, "/admin/audit"))
        page.get_by_role("heading", name="Audit trail", exact=True).wait_for()

        # The events just made: three refused reads by the viewer.
        refused_reads(server, "vic", viewer, 3)
        page.get_by_label("Type").select_option("forbidden_access")
        page.get_by_label("Actor").fill("vic")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/admin/audit?type=forbidden_access**actor=vic**")
        rows = page.locator("#rows tr")
        assert rows.count() == 3
        shown = [int(s) for s in page.locator("#rows tr").evaluate_all(
            "rows => rows.map(r => r.dataset.seq)"
        )]  # fmt: skip
        assert set(page.locator('#rows [data-field="actor"]').all_inner_texts()) == {"vic"}
        check_accessibility(page, shot, "filtered")

        # The live tail brings a fourth refusal in, without a reload.
        page.evaluate("document.documentElement.dataset.probe = 'same page'")
        refused_reads(server, "vic", viewer, 1)
        page.locator("#rows tr").nth(3).wait_for(timeout=30_000)
        assert page.evaluate("document.documentElement.dataset.probe") == "same page"
        shown = [int(s) for s in page.locator("#rows tr").evaluate_all(
            "rows => rows.map(r => r.dataset.seq)"
        )]  # fmt: skip
        assert len(shown) == 4 and shown == sorted(shown, reverse=True)

        # The export links, fetched with the page's own cookies: exactly the rows shown.
        cookies = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
        for label, fmt in (("JSON lines", "jsonl"), ("CSV", "csv")):
            href = page.get_by_role("link", name=label).get_attribute("href")
            answer = exported_file(server, href, cookies)
            disposition = answer.headers["content-disposition"]
            assert "wakedock-audit-filtered-" in disposition and "actor-vic" in disposition
            assert disposition.endswith(f'.{fmt}"')
            body = answer.text
            if fmt == "jsonl":
                exported = [json.loads(line)["seq"] for line in body.splitlines()]
            else:
                exported = [int(row["seq"]) for row in csv.DictReader(io.StringIO(body))]
            assert exported == sorted(shown)

        # The reference a refusal shows (its X-Request-Id) finds exactly its event.
        with httpx.Client(base_url=server.base_url, verify=server.ssl_context()) as http:
            refused = http.get("/api/v1/audit", headers=bearer(access_token(http, "vic", viewer)))
        assert refused.status_code == 403
        reference = refused.headers["x-request-id"]
        page.get_by_label("Type").select_option("")
        page.get_by_label("Actor").fill("")
        page.get_by_label("Reference (request id)").fill(reference)
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(f"**/admin/audit?**request_id={reference}**")
        assert page.locator("#rows tr").count() == 1
        assert page.locator('#rows [data-field="actor"]').all_inner_texts() == ["vic"]
        check_accessibility(page, shot, "by-reference")

        # Verify: the chain is intact.
        page.get_by_role("button", name="Verify now").click()
        page.locator("#chain", has_text="Chain intact").wait_for(timeout=60_000)
        assert "events checked" in page.locator("#chain").inner_text()
        check_accessibility(page, shot, "verified")

        # One refused read is rewritten in the database: the next check names it.
        victim = shown[1]
        with sqlite3.connect(data / "wakedock.db") as db:
            db.execute("UPDATE audit_events SET actor = 'nobody' WHERE seq = ?", (victim,))
        page.get_by_role("button", name="Verify now").click()
        page.locator("#chain", has_text="Tampered").wait_for(timeout=60_000)
        chain = page.locator("#chain").inner_text()
        assert f"seq {victim}, forbidden_access" in chain and "was changed" in chain
        check_accessibility(page, shot, "tampered")

        # The first bad event's own page: every field of it.
        page.get_by_role("link", name=f"seq {victim}").click()
        page.get_by_role("heading", name=f"Audit event {victim}").wait_for()
        assert "nobody" in text(page)
        check_accessibility(page, shot, "event")

        assert csp_violations(server, metrics) == 0
