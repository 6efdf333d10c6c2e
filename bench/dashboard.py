"""The services page with 1,000 services (issue #15): its server-side time against
`GET /api/v1/services` for the same 1,000, in interleaved rounds of one run, and what a browser
downloads for it (HTML + CSS + JS).

    .venv/bin/python bench/dashboard.py [--rounds 7] [--requests 20] [--services 1000]

In process (no network, no TLS: the server's own work only): the app of `create_app` on a
temporary SQLite database, an in-memory container runtime, production settings otherwise.
`app` is created through the services layer, then copied under 999 other names straight into
the database (bench/host_map.py's `copy_app`). An operator is signed in twice: a bearer token
for the API, the session cookie of the sign-in form for the page. Each round times `--requests`
requests of each kind, in alternating order, per request wall time and CPU time of this process;
the figures are medians over the rounds. Three kinds: the API's list (every service as JSON),
the services page as served (its first page of 50 rows, after reading, filtering and counting
all 1,000), and the same page with every one of the 1,000 rows on it (the page size raised for
the measure: the rendering cost of the whole list).

Goals (issue #15): page time <= 2x the API's; page + stylesheet + script < 150 KiB.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from common import code_line
from host_map import copy_app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.engine import app_spec
from support.fake_runtime import FakeRuntime
from wakedock import app as app_module
from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.context import RequestContext
from wakedock.dashboard import board as board_module
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor
from wakedock.services.spec import ServiceSpec

HERE = "https://testserver"
# A throwaway account of a temporary database.
PASSWORD = "Bench-dashboard-passphrase-7"


def timed(request: Callable[[], object], count: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds per request over `count` requests."""
    walls, cpus = [], []
    for _ in range(count):
        wall, cpu = time.perf_counter(), time.process_time()
        request()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {platform.python_version()}; in process, one thread")
    print(code_line())
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as root:
        database = Path(root) / "wakedock.db"
        settings = load_settings(
            None, {"data_dir": Path(root) / "data", "database": {"url": f"sqlite:///{database}"}}
        )
        c = build_components(settings, runtime=FakeRuntime())
        spec = ServiceSpec.model_validate(app_spec("wakedock-test/busybox:1", "app", "none"))
        c.services.create(
            Actor("bench", "admin"), spec, RequestContext(actor="bench"), owner_id=None
        )
        copy_app(database, args.services)
        with transaction(c.db) as db:
            c.users.create(
                db, RequestContext(actor="bench"), username="olga", password=PASSWORD,
                role=Role.OPERATOR, email=None,
            )  # fmt: skip
        client = TestClient(app_module.create_app(c), base_url=HERE, follow_redirects=False)
        login = client.post("/api/v1/auth/login", json={"username": "olga", "password": PASSWORD})
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        browser = TestClient(app_module.create_app(c), base_url=HERE, follow_redirects=False)
        signed = browser.post(
            "/login",
            data={"username": "olga", "password": PASSWORD, "next": "/services"},
            headers={"Origin": HERE, "Sec-Fetch-Site": "same-origin"},
        )
        assert signed.status_code == 303, signed.text

        def api() -> object:
            answer = client.get("/api/v1/services", headers=bearer)
            assert answer.status_code == 200 and len(answer.json()) == args.services
            return answer

        def page() -> object:
            answer = browser.get("/services")
            assert answer.status_code == 200 and "data-service=" in answer.text
            return answer

        def whole_page() -> object:
            board_module.PAGE_SIZE = args.services
            try:
                answer = browser.get("/services")
            finally:
                board_module.PAGE_SIZE = 50
            assert answer.text.count("<tr data-service=") == args.services
            return answer

        kinds = {"api": api, "page": page, "page, all rows": whole_page}
        for request in kinds.values():
            request()  # warm-up: templates compiled, caches filled
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        for n in range(args.rounds):
            order = list(kinds) if n % 2 == 0 else list(reversed(kinds))
            for kind in order:
                samples[kind].append(timed(kinds[kind], args.requests))

        api_wall = statistics.median(s[0] for s in samples["api"])
        api_cpu = statistics.median(s[1] for s in samples["api"])
        print(f"\n{args.services} services, {args.rounds} rounds of {args.requests} requests each")
        print(f"{'kind':<16}{'wall ms':>10}{'cpu ms':>10}{'wall / api':>12}{'cpu / api':>11}")
        for kind, values in samples.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(
                f"{kind:<16}{wall:>10.1f}{cpu:>10.1f}{wall / api_wall:>12.2f}{cpu / api_cpu:>11.2f}"
            )

        html = browser.get("/services").content
        css = browser.get("/assets/wakedock.css").content
        js = browser.get("/assets/wakedock.js").content
        whole = len(bytes(whole_page().content))  # type: ignore[attr-defined]
        api_bytes = len(api().content)  # type: ignore[attr-defined]
        total = len(html) + len(css) + len(js)
        rows = len(re.findall(r"<tr data-service=", html.decode()))
        print(f"\ntransfer of the page as served ({rows} rows): HTML {len(html) / 1024:.1f} KiB "
              f"+ CSS {len(css) / 1024:.1f} KiB + JS {len(js) / 1024:.1f} KiB = "
              f"{total / 1024:.1f} KiB (goal < 150 KiB)")  # fmt: skip
        print(f"the page with all {args.services} rows: HTML {whole / 1024:.1f} KiB; "
              f"the API's JSON: {api_bytes / 1024:.1f} KiB")  # fmt: skip


if __name__ == "__main__":
    main()
