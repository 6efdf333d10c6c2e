"""A service's page with 50 recorded wakes (issue #15): its server-side time against
`GET /api/v1/services/{id}` and `GET /api/v1/services/{id}/status` for the same service, in
interleaved rounds of one run, and what a browser downloads for it (HTML + CSS + JS).

    .venv/bin/python bench/service_page.py [--rounds 7] [--requests 20]

In process (no network, no TLS: the server's own work only), as bench/dashboard.py: the app of
`create_app` on a temporary SQLite database, the in-memory container runtime (its `docker
inspect` answered with a WakeDock container's fields, so the CIS checks run on real-looking
data), one operator signed in with a bearer token and with the sign-in form's cookie. The
service is running, has 50 wakes in its history, an hour of requests counted, 120 usage samples
and 60 audit events. The page reads the service, the engine twice (inspect, logs), the wake
history, the audit page and the owner; then renders 4 charts, 23 CIS rows, 20 audit rows and
200 log lines.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from common import code_line

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.engine import app_spec
from support.fake_runtime import FakeRuntime
from wakedock import app as app_module
from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.context import RequestContext
from wakedock.dashboard.usage import Sample
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor
from wakedock.services.spec import ServiceSpec
from wakedock.services.wake_history import WakeHistory

HERE = "https://testserver"
# A throwaway account of a temporary database: a random passphrase.
PASSWORD = secrets.token_urlsafe(18)


def timed(request: Callable[[], object], count: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds per request over `count` requests."""
    walls, cpus = [], []
    for _ in range(count):
        wall, cpu = time.perf_counter(), time.process_time()
        request()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def inspected(_ref: str) -> list[dict[str, Any]]:
    return [
        {
            "Name": "/wakedock-app",
            "Config": {"User": "", "Healthcheck": {"Test": ["CMD", "true"]}},
            "HostConfig": {
                "CapDrop": ["ALL"], "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"],
                "Memory": 256 * 2**20, "NanoCpus": 500_000_000, "PidsLimit": 256, "Init": True,
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5},
                "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            },
            "NetworkSettings": {
                "Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}
            },
        }
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {platform.python_version()}; in process, one thread")
    print(code_line())
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as root:
        database = Path(root) / "wakedock.db"
        settings = load_settings(
            None, {"data_dir": Path(root) / "data", "database": {"url": f"sqlite:///{database}"}}
        )
        runtime = FakeRuntime()
        runtime.inspect = inspected  # type: ignore[method-assign]
        c = build_components(settings, runtime=runtime)
        spec = ServiceSpec.model_validate(app_spec("wakedock-test/busybox:1", "app", "none"))
        admin, context = Actor("bench", "admin"), RequestContext(actor="bench")
        view = c.services.create(admin, spec, context, owner_id=None)
        for _ in range(30):  # 60 audit events naming the service
            c.services.start(admin, "app", context)
            c.services.stop(admin, "app", context)
        view = c.services.start(admin, "app", context)
        history, now = WakeHistory(c.db), c.clock.now()
        for n in range(50):
            history.record(view.id, 1.5 + (n % 7) / 10, now - timedelta(minutes=50 - n))
        # An hour of requests and 120 usage samples, put straight where they are kept.
        first = int(now.timestamp()) // 60 - 59
        c.activity._minutes["app"] = deque(([first + m, m] for m in range(60)), maxlen=60)
        c.details._samples._samples["app"] = deque(
            (Sample(now, 5.0 + n % 9, 40.0 + n % 13, 256.0) for n in range(120)), maxlen=120
        )
        with transaction(c.db) as db:
            c.users.create(
                db, context, username="olga", password=PASSWORD, role=Role.OPERATOR, email=None
            )
        client = TestClient(app_module.create_app(c), base_url=HERE, follow_redirects=False)
        login = client.post("/api/v1/auth/login", json={"username": "olga", "password": PASSWORD})
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        browser = TestClient(app_module.create_app(c), base_url=HERE, follow_redirects=False)
        signed = browser.post(
            "/login",
            data={"username": "olga", "password": PASSWORD, "next": "/services/app"},
            headers={"Origin": HERE, "Sec-Fetch-Site": "same-origin"},
        )
        assert signed.status_code == 303, signed.text

        def api() -> object:
            answer = client.get(f"/api/v1/services/{view.id}", headers=bearer)
            assert answer.status_code == 200
            return answer

        def status() -> object:
            answer = client.get(f"/api/v1/services/{view.id}/status", headers=bearer)
            assert answer.status_code == 200
            return answer

        def page() -> object:
            answer = browser.get("/services/app")
            assert answer.status_code == 200 and answer.text.count('<rect class="bar"') == 110
            return answer

        def live() -> object:
            answer = browser.get("/services/app/live")
            assert answer.status_code == 200
            return answer

        kinds = {"api service": api, "api status": status, "page": page, "page's poll": live}
        for request in kinds.values():
            request()  # warm-up
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        for n in range(args.rounds):
            for kind in list(kinds) if n % 2 == 0 else list(reversed(kinds)):
                results[kind].append(timed(kinds[kind], args.requests))
        base_wall = statistics.median(s[0] for s in results["api service"])
        base_cpu = statistics.median(s[1] for s in results["api service"])
        print(f"\n{args.rounds} rounds of {args.requests} requests each")
        print(f"{'kind':<14}{'wall ms':>10}{'cpu ms':>10}{'wall / api':>12}{'cpu / api':>11}")
        for kind, values in results.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(f"{kind:<14}{wall:>10.1f}{cpu:>10.1f}{wall / base_wall:>12.2f}"
                  f"{cpu / base_cpu:>11.2f}")  # fmt: skip
        html = browser.get("/services/app").content
        css = browser.get("/assets/wakedock.css").content
        js = browser.get("/assets/service-detail.js").content
        total = len(html) + len(css) + len(js)
        print(f"\ntransfer: HTML {len(html) / 1024:.1f} KiB + CSS {len(css) / 1024:.1f} KiB + "
              f"JS {len(js) / 1024:.1f} KiB = {total / 1024:.1f} KiB (goal < 150 KiB)")  # fmt: skip


if __name__ == "__main__":
    main()
